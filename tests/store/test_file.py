import json
import os
import stat
import subprocess
import sys
import time

import pytest

from console.crypto import Keyring, generate_key
from console.errors import CryptoError, InsecurePermissions, StaleWrite, StorageCorrupt, StorageError, UnknownKey
from console.store.base import PendingLogin
from console.store.file import FileTier
from console.tokens import TokenRecord


def rec(uid="alice", token="sk-ant-oat01-AAAA1111", refresh="sk-ant-ort01-RRRR2222", **kw):
    return TokenRecord(user_id=uid, access_token=token, refresh_token=refresh,
                       expires_at=time.time() + 3600, **kw)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_write_read_with_private_modes(tmp_path):
    tier = FileTier(tmp_path / "tokens" / "claude_tokens.json")
    stored = await tier.put(rec())
    assert stored.version == 1 and stored.source == "file"
    assert mode(tier.path) == 0o600
    assert mode(tier.path.parent) == 0o700
    again = await tier.get("alice")
    assert again.access_token == "sk-ant-oat01-AAAA1111" and again.version == 1
    assert await tier.get("nobody") is None


async def test_multi_user_and_listing_hides_tokens(tmp_path):
    tier = FileTier(tmp_path / "t.json")
    await tier.put(rec("a"))
    await tier.put(rec("b"))
    listed = {r.user_id: r for r in await tier.list()}
    assert set(listed) == {"a", "b"}
    assert listed["a"].access_token == "<hidden>"
    full = {r.user_id: r for r in await tier.list(secrets=True)}
    assert full["b"].access_token == "sk-ant-oat01-AAAA1111"


async def test_compare_and_swap_refuses_stale_writes(tmp_path):
    tier = FileTier(tmp_path / "t.json")
    v1 = await tier.put(rec(), expected_version=0)
    v2 = await tier.put(v1.evolve(access_token="sk-ant-oat01-NEWER"), expected_version=1)
    assert v2.version == 2
    with pytest.raises(StaleWrite):
        await tier.put(v1.evolve(access_token="sk-ant-oat01-OLDER"), expected_version=1)
    assert (await tier.get("alice")).access_token == "sk-ant-oat01-NEWER"
    with pytest.raises(StaleWrite):
        await tier.put(rec(), expected_version=0)  # must not exist yet, but it does


async def test_loose_permissions_refused_with_fix(tmp_path):
    tier = FileTier(tmp_path / "t.json")
    await tier.put(rec())
    os.chmod(tier.path, 0o644)
    tier2 = FileTier(tier.path)
    with pytest.raises(InsecurePermissions) as info:
        await tier2.get("alice")
    assert f"chmod 600 {tier.path}" in str(info.value)
    assert info.value.exit_code == 3


async def test_shared_folder_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(StorageError, match="shared with other users"):
        await FileTier(shared / "t.json").put(rec())


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"something": "else"}'])
async def test_corrupt_file_clear_error_and_untouched(tmp_path, content):
    path = tmp_path / "t.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    tier = FileTier(path)
    with pytest.raises(StorageCorrupt) as info:
        await tier.get("alice")
        await tier.put(rec())
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(StorageCorrupt):
        await tier.put(rec("bob"))
    assert path.read_bytes() == content


async def test_one_malformed_entry_is_reported_and_kept(tmp_path):
    path = tmp_path / "t.json"
    path.write_bytes(b'{"users": {"alice": "oops"}}')
    os.chmod(path, 0o600)
    tier = FileTier(path)
    with pytest.raises(StorageCorrupt, match="alice"):
        await tier.get("alice")
    await tier.put(rec("bob"))  # other users still work, and alice's entry is kept as it was
    assert json.loads(path.read_text())["users"]["alice"] == "oops"


async def test_reads_the_seed_single_user_format(tmp_path):
    path = tmp_path / "claude_tokens.json"
    path.write_text(json.dumps({"accessToken": "sk-ant-oat01-seed", "refreshToken": "sk-ant-ort01-seed",
                                "expiresAt": 1_900_000_000_000, "scopes": ["user:inference"]}))
    os.chmod(path, 0o600)
    tier = FileTier(path)
    record = await tier.get("default")
    assert record.access_token == "sk-ant-oat01-seed"
    assert record.expires_at == 1_900_000_000
    # Writing converts to the multi-user format and keeps the user.
    await tier.put(record.evolve(access_token="sk-ant-oat01-new"), expected_version=0)
    data = json.loads(path.read_text())
    assert data["users"]["default"]["access_token"] == "sk-ant-oat01-new"


async def test_encrypted_at_rest(tmp_path):
    ring = Keyring.from_spec(generate_key())
    tier = FileTier(tmp_path / "t.json", ring)
    await tier.put(rec())
    raw = tier.path.read_text()
    assert "AAAA1111" not in raw and "RRRR2222" not in raw
    assert raw.count("enc:v1:") == 2
    assert (await tier.get("alice")).refresh_token == "sk-ant-ort01-RRRR2222"


async def test_wrong_key_is_clear_and_nothing_overwritten(tmp_path):
    path = tmp_path / "t.json"
    await FileTier(path, Keyring.from_spec(generate_key())).put(rec())
    before = path.read_bytes()
    wrong = FileTier(path, Keyring.from_spec(generate_key()))
    with pytest.raises(UnknownKey) as info:
        await wrong.get("alice")
    assert "key id" in str(info.value)
    # Writing another user keeps alice's ciphertext byte-for-byte.
    await wrong.put(rec("bob"))
    after = json.loads(path.read_text())["users"]["alice"]
    assert after == json.loads(before)["users"]["alice"]
    plain = FileTier(path)
    with pytest.raises(CryptoError, match="no key is configured"):
        await plain.get("alice")


async def test_plaintext_file_is_encrypted_on_next_write(tmp_path):
    path = tmp_path / "t.json"
    await FileTier(path).put(rec())
    ring = Keyring.from_spec(generate_key())
    tier = FileTier(path, ring)
    record = await tier.get("alice")
    assert record.access_token == "sk-ant-oat01-AAAA1111"
    await tier.put(record, expected_version=record.version)
    assert "AAAA1111" not in path.read_text()


def test_kill_between_temp_write_and_rename_leaves_old_file_whole(tmp_path):
    path = tmp_path / "t.json"
    script = f"""
import asyncio, os, signal, time
from console.store.file import FileTier
from console.tokens import TokenRecord
import console.store.fsutil as fsutil
tier = FileTier({str(path)!r})
rec = TokenRecord(user_id="alice", access_token="sk-ant-oat01-OLD1", expires_at=time.time() + 99)
asyncio.run(tier.put(rec))
fsutil.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(tier.put(rec.evolve(access_token="sk-ant-oat01-NEW2"), expected_version=1))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    data = json.loads(path.read_text())
    assert data["users"]["alice"]["access_token"] == "sk-ant-oat01-OLD1"
    leftovers = list(tmp_path.glob(".t.json.tmp-*"))
    assert leftovers, "the killed writer should have left its temp file behind"
    assert mode(leftovers[0]) == 0o600


async def test_pending_logins_are_private_single_use_and_swept(tmp_path):
    tier = FileTier(tmp_path / "store" / "t.json", Keyring.from_spec(generate_key()))
    now = time.time()
    live = PendingLogin("state-live", "v" * 43, "alice", "https://r", now, now + 600)
    old = PendingLogin("state-old", "w" * 43, "alice", "https://r", now - 700, now - 100)
    await tier.save_pending(live)
    await tier.save_pending(old)
    files = list(tier.pending_dir.glob("*.json"))
    assert len(files) == 2 and all(mode(f) == 0o600 for f in files)
    assert mode(tier.pending_dir) == 0o700
    assert all("v" * 43 not in f.read_text() for f in files)  # verifier encrypted
    assert not str(tier.pending_dir).startswith("/tmp/claude")
    assert (await tier.newest_pending("alice")).state == "state-live"
    assert await tier.sweep_pending() == 1
    taken = await tier.take_pending("state-live")
    assert taken.verifier == "v" * 43
    assert await tier.take_pending("state-live") is None


async def test_audit_log_is_private_and_has_no_tokens(tmp_path):
    from console.store.base import AuditEvent

    tier = FileTier(tmp_path / "t.json")
    await tier.append_audit(AuditEvent("login", "alice", True, "account a@b"))
    await tier.append_audit(AuditEvent("refresh", "bob", False, "boom"))
    assert mode(tier.audit_path) == 0o600
    trail = await tier.audit_trail("alice")
    assert [e.action for e in trail] == ["login"]
    assert [e.user_id for e in await tier.audit_trail()] == ["bob", "alice"]


async def test_rotate_keys_rewrites_to_the_first_key_and_reports_the_rest(tmp_path):
    old, new, lost = generate_key(), generate_key(), generate_key()
    path = tmp_path / "t.json"
    await FileTier(path, Keyring.from_spec(old)).put(rec("alice"))
    await FileTier(path, Keyring.from_spec(old)).put(rec("bob", token="sk-ant-oat01-BOB0"))
    await FileTier(path, Keyring.from_spec(lost)).put(rec("carol"))
    carol_before = json.loads(path.read_text())["users"]["carol"]
    both = FileTier(path, Keyring.from_spec(f"{new},{old}"))
    report = await both.rotate_keys()
    assert (report.rotated, report.current) == (2, 0)
    assert list(report.unreadable.values()) == [1] and not report.complete
    assert report.retired == [Keyring.from_spec(old).primary_id]  # no row needs the old key now
    assert json.loads(path.read_text())["users"]["carol"] == carol_before  # left exactly as it was
    only_new = FileTier(path, Keyring.from_spec(new))
    assert (await only_new.get("bob")).access_token == "sk-ant-oat01-BOB0"
    assert (await only_new.get("alice")).refresh_token == "sk-ant-ort01-RRRR2222"
    again = await both.rotate_keys()
    assert (again.rotated, again.current) == (0, 2)  # resumable: nothing left to do


async def test_rotate_keys_moves_open_logins_to_the_first_key(tmp_path):
    old, new = generate_key(), generate_key()
    path = tmp_path / "t.json"
    before = FileTier(path, Keyring.from_spec(old))
    now = time.time()
    for state in ("state-a", "state-b"):
        await before.save_pending(PendingLogin(state, state[-1] * 43, "alice", "https://r", now, now + 600))
    await before.take_pending("state-b")  # already used: rotation must not bring it back
    report = await FileTier(path, Keyring.from_spec(f"{new},{old}")).rotate_keys()
    assert report.pending_rotated == 1
    only_new = FileTier(path, Keyring.from_spec(new))  # the old key is dropped now
    assert (await only_new.take_pending("state-a")).verifier == "a" * 43
    assert await only_new.take_pending("state-b") is None
    assert list(only_new.pending_dir.iterdir()) == []  # no claimed or temporary files left behind
