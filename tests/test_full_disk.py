"""Full disk is a state, not a traceback: the file tier on a tiny tmpfs filled up during
refresh, login, logout and restore. One line naming the path and what was kept; no user lost;
the rotated token lands once space returns. (Skipped where a tmpfs cannot be mounted.)"""

from __future__ import annotations

import asyncio

import pytest

from console import transfer
from console.cli import main
from console.config import load_settings
from console.errors import DiskFull, NotYetStored
from console.service import AuthService
from console.store import AuditEvent


@pytest.fixture
def disk_env(tiny_disk, console_env, monkeypatch):
    token_file = tiny_disk.path / "store" / "claude_tokens.json"
    monkeypatch.setenv("CLAUDE_TOKEN_FILE", str(token_file))
    return {**console_env, "CLAUDE_TOKEN_FILE": str(token_file)}


async def test_full_disk_during_refresh_login_logout_restore(disk_env, tiny_disk, emulator, login, capsys):
    users = ["ann", "bob", "cy"]
    service = AuthService(load_settings())
    backup = tiny_disk.path.parent / f"{tiny_disk.path.name}-backup.json"
    try:
        for uid in users + ["dee"]:
            await login(service, uid)
        await transfer.backup(service, backup, "correct horse battery staple", force=True)
        await service.logout("dee")  # the restore below has something to write
        old = {uid: (await service.store.get_fresh(uid)) for uid in users}
        tiny_disk.fill()

        # refresh: the provider rotates, the store cannot take it: held, served, not lost
        held = []
        for uid in users:
            with pytest.raises(NotYetStored, match=f"user {uid}'s new token is held locally, not yet stored"
                                                   ".*no space left on the device") as caught:
                await service.refresh(uid, force=True)
            held.append(caught.value.record)
            assert await service.get_access_token(uid) == caught.value.record.access_token
        assert set(service.held_users()) == set(users)

        # the CLI on a full disk: one line, exit 3, no traceback
        for argv in (["logout", "--user", "ann", "--yes"], ["login", "--user", "dan", "--no-browser"],
                     ["refresh", "--user", "bob"]):
            tiny_disk.fill()
            code = await asyncio.to_thread(main, argv)
            out = capsys.readouterr()
            assert code == 3, (argv, out)
            assert "Traceback" not in out.err + out.out
            assert str(tiny_disk.path) in out.err, (argv, out.err)

        # restore on a full disk: nothing written, one line
        contents = await transfer.open_backup(backup, "correct horse battery staple", allow_weak_kdf=True)
        plan = await transfer.plan_restore(service, contents, overwrite="always")
        tiny_disk.fill()
        with pytest.raises(DiskFull, match="left as it was"):
            await transfer.apply_restore(service, plan)
        assert await service.store.get_fresh("dee") is None

        tiny_disk.free()
        for _ in range(100):
            if not service.held_users():
                break
            await asyncio.sleep(0.1)
        assert service.held_users() == {}
        logged_out = 0
        for uid, record in zip(users, held):
            stored = await service.store.get_fresh(uid)
            assert stored.refresh_token == record.refresh_token != old[uid].refresh_token
            try:
                await service.refresh(uid, force=True)
            except Exception:  # noqa: BLE001 - counted: must be none
                logged_out += 1
        assert logged_out == 0
        assert emulator.stats()["refresh_replays"] == 0

        # audit lines a full disk refuses are counted, never fatal
        tiny_disk.fill()
        for _ in range(300):  # more than the last page of the audit log can take
            await service.store.append_audit(AuditEvent("refresh", "ann", detail="x" * 100))
        assert service.store.primary.audit_lost >= 1
    finally:
        tiny_disk.free()
        await service.aclose()
