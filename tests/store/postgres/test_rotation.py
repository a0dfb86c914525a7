"""``rotate-key``: every row re-encrypted to the first key, online, resumable, never lossy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from console.config import load_settings
from console.crypto import Keyring, generate_key
from console.errors import UnknownKey
from console.service import AuthService
from console.store.base import PendingLogin
from console.store.postgres import rotate_keys
from console.store.postgres import PostgresTier
from console.tokens import TokenRecord

pytestmark = pytest.mark.postgres

TOKENS = '"LiteLLM_ClaudeOAuthTokens"'


def record(uid: str) -> TokenRecord:
    return TokenRecord(user_id=uid, access_token=f"sk-ant-oat01-access-{uid}", refresh_token=f"sk-ant-ort01-r-{uid}",
                       expires_at=time.time() + 3600, scopes=["user:inference"])


async def seed(dsn: str, key: str, users: list[str]) -> None:
    tier = PostgresTier(dsn, Keyring.from_spec(key))
    try:
        for uid in users:
            await tier.put(record(uid), 0)
        now = time.time()
        await tier.save_pending(PendingLogin("state-1", "v" * 60, users[0], "https://cb", now, now + 600))
    finally:
        await tier.close()


async def key_ids(dsn: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT split_part(access_token_encrypted, ':', 3) AS kid, "
                                f"split_part(refresh_token_encrypted, ':', 3) AS rkid FROM {TOKENS}")
        pending = await conn.fetch("""SELECT split_part(verifier_encrypted, ':', 3) FROM
                                      "LiteLLM_ClaudeOAuthPendingLogins" """)
    finally:
        await conn.close()
    out: dict[str, int] = {}
    for kid, rkid in rows:
        assert kid == rkid
        out[kid] = out.get(kid, 0) + 1
    for (kid,) in pending:
        out[f"pending:{kid}"] = out.get(f"pending:{kid}", 0) + 1
    return out


async def test_rotation_moves_every_row_and_the_old_key_can_go(pg_dsn):
    old, new = generate_key(), generate_key()
    users = [f"user{i:03d}" for i in range(23)]
    await seed(pg_dsn, old, users)
    both = Keyring.from_spec(f"{new},{old}")
    tier = PostgresTier(pg_dsn, both)
    seen = []
    try:
        report = await rotate_keys(tier, batch=5, progress=lambda r: seen.append(r.rotated))
    finally:
        await tier.close()
    assert (report.rotated, report.current, report.pending_rotated) == (23, 23, 1)
    assert report.complete and report.retired == [Keyring.from_spec(old).primary_id]
    assert seen == [5, 10, 15, 20, 23]  # batches of five, progress after each
    assert await key_ids(pg_dsn) == {both.primary_id: 23, f"pending:{both.primary_id}": 1}
    only_new = PostgresTier(pg_dsn, Keyring.from_spec(new))  # the old key is gone now
    try:
        got = await only_new.get("user007")
        assert got.access_token == "sk-ant-oat01-access-user007" and got.version == 1  # version untouched
        assert (await only_new.take_pending("state-1")).verifier == "v" * 60
    finally:
        await only_new.close()


async def test_rotation_resumes_after_an_interruption(pg_dsn):
    old, new = generate_key(), generate_key()
    await seed(pg_dsn, old, [f"u{i}" for i in range(12)])
    tier = PostgresTier(pg_dsn, Keyring.from_spec(f"{new},{old}"))

    def stop_after_first_batch(report):
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            await rotate_keys(tier, batch=4, progress=stop_after_first_batch)
        assert await key_ids(pg_dsn) == {Keyring.from_spec(new).primary_id: 4,
                                         Keyring.from_spec(old).primary_id: 8,
                                         f"pending:{Keyring.from_spec(old).primary_id}": 1}
        report = await rotate_keys(tier, batch=4)
        assert report.rotated == 8 and report.current == 12 and report.complete
    finally:
        await tier.close()


async def test_a_write_landing_mid_batch_wins(pg_dsn):
    """A refresh that saves between the rotation's read and its write is kept, not rolled back."""
    old, new = generate_key(), generate_key()
    await seed(pg_dsn, old, ["alice", "bob"])
    replica = PostgresTier(pg_dsn, Keyring.from_spec(f"{new},{old}"))

    tier = PostgresTier(pg_dsn, Keyring.from_spec(f"{new},{old}"))
    original = tier.attempt
    calls = {"n": 0}

    async def attempt(fn, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the first page was read; its write comes next: refresh alice now
            current = await replica.get("alice")
            await replica.put(current.evolve(access_token="sk-ant-oat01-refreshed", refresh_count=1),
                              current.version)
        return await original(fn, **kw)

    tier.attempt = attempt
    try:
        report = await rotate_keys(tier, batch=10)
        assert report.raced == 1 and report.rotated == 1 and report.complete
        alone = PostgresTier(pg_dsn, Keyring.from_spec(new))
        try:
            alice = await alone.get("alice")
            assert alice.access_token == "sk-ant-oat01-refreshed" and alice.refresh_count == 1
            assert (await alone.get("bob")).access_token == "sk-ant-oat01-access-bob"
        finally:
            await alone.close()
    finally:
        await tier.close()
        await replica.close()


async def test_rows_under_an_unknown_key_are_named_and_left_alone(pg_dsn):
    lost, kept, new = generate_key(), generate_key(), generate_key()
    await seed(pg_dsn, lost, ["a1", "a2"])
    await seed(pg_dsn, kept, ["b1"])
    before = await key_ids(pg_dsn)
    tier = PostgresTier(pg_dsn, Keyring.from_spec(f"{new},{kept}"))
    try:
        report = await rotate_keys(tier)
    finally:
        await tier.close()
    lost_id = Keyring.from_spec(lost).primary_id
    assert report.rotated == 1 and not report.complete and report.retired == []
    assert report.unreadable == {lost_id: 2}
    after = await key_ids(pg_dsn)
    assert after[lost_id] == before[lost_id] == 2  # nothing overwritten


async def test_rotation_under_concurrent_reads_and_refreshes(pg_env, pg_dsn, emulator, login):
    """Readers never see an error; a refresh racing the rotation wins and is kept."""
    old, new = pg_env["CLAUDE_TOKEN_ENCRYPTION_KEY"], generate_key()
    users = [f"r{i:02d}" for i in range(30)]
    writer = AuthService(load_settings())
    await asyncio.gather(*[login(writer, uid) for uid in users])
    await writer.aclose()
    rotating = AuthService(load_settings(encryption_key=f"{new},{old}", memory_cache_ttl=0.0))
    reader = AuthService(load_settings(encryption_key=f"{new},{old}", memory_cache_ttl=0.0))
    errors, reads, stop = [], 0, asyncio.Event()
    emulator.state.configure(latency_ms=5)

    async def read_forever(offset: int) -> None:
        nonlocal reads
        i = offset
        while not stop.is_set():
            try:
                await reader.get_access_token(users[i % len(users)])
                reads += 1
            except Exception as exc:  # noqa: BLE001 - any error at all fails the test
                errors.append(repr(exc))
            i += 1
            await asyncio.sleep(0)

    async def refresh_some() -> None:
        for uid in users[::3]:
            await reader.refresh(uid, force=True)

    try:
        readers = [asyncio.create_task(read_forever(n)) for n in range(4)]
        refreshing = asyncio.create_task(refresh_some())
        report = await rotating.rotate_key(batch=3)
        await refreshing
        stop.set()
        await asyncio.gather(*readers)
        assert errors == [] and reads > 0
        assert report.complete
        # everything is readable with the new key alone, and the refreshed tokens were kept
        only_new = AuthService(load_settings(encryption_key=new))
        try:
            for uid in users:
                stored = await only_new.get_record(uid)
                assert stored.refresh_count == (1 if uid in users[::3] else 0)
            assert emulator.stats()["refresh_replays"] == 0
            trail = await only_new.audit_trail("*")
            assert trail[0].action == "rotate_key" and trail[0].ok
        finally:
            await only_new.aclose()
    finally:
        stop.set()
        await rotating.aclose()
        await reader.aclose()


def test_cli_rotate_key(pg_dsn, console_env):
    old, new = generate_key(), generate_key()
    asyncio.run(seed(pg_dsn, old, ["alice", "bob"]))
    env = {**os.environ, **console_env, "DATABASE_URL": pg_dsn, "CLAUDE_TOKEN_ENCRYPTION_KEY": f"{new},{old}"}
    done = subprocess.run([sys.executable, "-m", "console", "rotate-key", "--batch", "1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    new_id, old_id = Keyring.from_spec(new).primary_id, Keyring.from_spec(old).primary_id
    assert f"re-encrypted 2 rows and 1 pending login to key id {new_id}" in done.stdout
    assert f"key ids {old_id} can be removed" in done.stdout
    again = subprocess.run([sys.executable, "-m", "console", "rotate-key"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert again.returncode == 0 and "re-encrypted 0 rows" in again.stdout
    env["CLAUDE_TOKEN_ENCRYPTION_KEY"] = generate_key()  # neither key: rows cannot be read
    lost = subprocess.run([sys.executable, "-m", "console", "rotate-key"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert lost.returncode == UnknownKey.exit_code
    assert f"2 under {new_id}" in lost.stderr and lost.stderr.count("\n") == 1
