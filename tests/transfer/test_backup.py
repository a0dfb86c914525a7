"""Backup and restore (``console.transfer``) with a service, on the file store and on PostgreSQL.

Most tests use weak KDF parameters through the engine's explicit test-only arguments
(``kdf=WEAK`` when writing, ``allow_weak_kdf=True`` when reading) so they stay fast; one
test runs the real defaults and checks they are what the header records.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from console import transfer
from console.config import load_settings
from console.crypto import generate_key
from console.errors import BackupCorrupt, BackupError, NotLoggedIn, UsageError, WrongPassphrase
from console.service import AuthService
from console.tokens import TokenRecord
from console.transfer.payload import PAYLOAD_FIELDS, PAYLOAD_KIND, encode_payload
from console.transfer.sealed import ARGON2ID, MAGIC, _unb64, open_sealed, read_header, seal

WEAK = {"name": "scrypt", "n": 2 ** 10, "r": 8, "p": 1}
PASS = "correct horse battery"


def make_records(n: int, *, base: float | None = None, prefix: str = "user") -> list[TokenRecord]:
    """Records with every field set (some None), different per user."""
    base = base or time.time() - 3600
    out = []
    for i in range(n):
        out.append(TokenRecord(
            user_id=f"{prefix}{i:05d}", access_token=f"sk-ant-oat01-{os.urandom(24).hex()}",
            refresh_token=None if i % 7 == 3 else f"sk-ant-ort01-{os.urandom(24).hex()}",
            expires_at=round(base + 7200 + i, 6), scopes=["user:inference", "user:profile"][: 1 + i % 2],
            account_email=f"{prefix}{i}@example.com" if i % 5 else None, account_uuid=f"acct-{i}",
            organization_uuid=f"org-{i % 3}", organization_name=f"Org {i % 3}" if i % 4 else None,
            subscription_type="max" if i % 2 else "pro", created_at=round(base - 86400 + i, 6),
            updated_at=round(base + i / 1000, 6), last_used=round(base + 60 + i, 6) if i % 3 else None,
            refresh_count=i % 11, last_refresh_at=round(base + 30, 6) if i % 2 else None,
            last_refresh_error_at=round(base + 10, 6) if i % 9 == 1 else None,
            last_refresh_error="HTTP 503 from the provider" if i % 9 == 1 else None,
            refresh_failures=1 if i % 9 == 1 else 0, needs_login=i % 13 == 5))
    return out


def with_header(data: bytes, change) -> bytes:
    """The file with its header edited by ``change(header)`` (length prefix kept right)."""
    magic, version, length = struct.unpack_from(">8sHI", data)
    header = json.loads(data[14:14 + length])
    change(header)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack(">8sHI", magic, version, len(head)) + head + data[14 + length:]


def comparable(record: TokenRecord) -> dict:
    data = record.to_dict()
    data.pop("source")
    return data


@pytest.fixture
def keyed_env(console_env, monkeypatch):
    monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", generate_key())
    return console_env


@pytest.fixture
async def file_service(keyed_env):
    svc = AuthService(load_settings())
    yield svc
    await svc.aclose()


@pytest.fixture
async def pg_service(keyed_env, pg_dsn, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    svc = AuthService(load_settings())
    assert svc.store.primary.name == "postgres"
    yield svc
    await svc.aclose()


@pytest.fixture(params=["file", "postgres"])
def store_kind(request, keyed_env, monkeypatch) -> str:
    """The same test on the file store and on PostgreSQL."""
    if request.param == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_dsn"))
    return request.param


@pytest.fixture
async def any_service(store_kind):
    svc = AuthService(load_settings())
    assert svc.store.primary.name == store_kind
    yield svc
    await svc.aclose()


async def seed(service: AuthService, records: list[TokenRecord]) -> dict[str, TokenRecord]:
    written = await service.store.put_many(records)
    assert len(written) == len(records)
    return {r.user_id: r for r in await service.store.primary.list(secrets=True)}


async def wipe(service: AuthService) -> None:
    """Lose every stored token: the token file removed, or every row deleted."""
    if service.store.primary.name == "file":
        service.settings.token_path.unlink()
    else:
        import asyncpg

        conn = await asyncpg.connect(service.store.primary.dsn)
        try:
            await conn.execute('DELETE FROM "LiteLLM_ClaudeOAuthTokens"')
        finally:
            await conn.close()
    assert await service.store.primary.list() == []


async def restore(service, path, *, users=None, overwrite="newer", batch_size=None):
    contents = await transfer.open_backup(path, PASS, allow_weak_kdf=True)
    plan = await transfer.plan_restore(service, contents, users=users, overwrite=overwrite)
    return plan, await transfer.apply_restore(service, plan, batch_size=batch_size)


def store_bytes(service: AuthService) -> bytes | None:
    path = service.settings.token_path
    return path.read_bytes() if path.exists() else None


# -- round trips ----------------------------------------------------------------------------

async def test_round_trip_1000_users(any_service, tmp_path):
    service = any_service
    before = await seed(service, make_records(1000))
    target = tmp_path / "out" / "tokens.ccbackup"
    target.parent.mkdir(mode=0o755)
    summary = await transfer.backup(service, target, PASS, kdf=WEAK)
    assert summary.users == 1000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755  # the operator's folder is left alone
    assert [p.name for p in target.parent.iterdir()] == ["tokens.ccbackup"]  # no temp file left
    raw = target.read_bytes()
    for record in list(before.values())[:20]:  # tokens are inside the encryption, not beside it
        assert record.access_token.encode() not in raw and record.user_id.encode() not in raw
    authors = None
    if service.store.primary.name == "postgres":
        names, rows = await service.store.primary.export_rows()
        authors = {r[0]: tuple(r[names.index("created_by"):]) for r in rows}

    await wipe(service)
    plan, result = await restore(service, target, batch_size=300)
    assert plan.counts()["new"] == 1000
    assert len(result.written) == 1000 and result.changed_meanwhile == []
    assert result.batches == 4
    after = {r.user_id: r for r in await service.store.primary.list(secrets=True)}
    assert after.keys() == before.keys()
    differing = [uid for uid in before if comparable(before[uid]) != comparable(after[uid])]
    assert differing == [], f"{len(differing)} users differ, e.g. {before[differing[0]]} != {after[differing[0]]}"
    if authors is not None:
        names, rows = await service.store.primary.export_rows()
        assert {r[0]: tuple(r[names.index("created_by"):]) for r in rows} == authors
    # The service reads them as the same tokens.
    sample = before["user00042"]
    assert (await service.get_record("user00042")).access_token == sample.access_token
    trail = await service.audit_trail("user00042", 5)
    assert trail[0].action == "restore" and "added" in trail[0].detail


async def test_restore_is_idempotent(any_service, tmp_path):
    service = any_service
    await seed(service, make_records(40))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    await service.store.delete("user00003")
    _, first = await restore(service, target)
    assert first.written == ["user00003"] and first.unchanged == 39
    versions = {r.user_id: r.version for r in await service.store.primary.list()}
    plan, second = await restore(service, target)
    assert plan.counts() == {"new": 0, "older": 0, "newer": 0, "conflict": 0, "same": 40, "invalid": 0}
    assert second.written == [] and second.batches == 0
    assert {r.user_id: r.version for r in await service.store.primary.list()} == versions


async def test_backup_of_chosen_users_and_unknown_ones(file_service, tmp_path):
    await seed(file_service, make_records(5))
    target = tmp_path / "some.ccbackup"
    with pytest.raises(NotLoggedIn, match="user 'ghost' is not stored, so nothing was backed up"):
        await transfer.backup(file_service, target, PASS, users=["user00001", "ghost"], kdf=WEAK)
    assert not target.exists()
    summary = await transfer.backup(file_service, target, PASS, users=["user00001", "user00003"], kdf=WEAK)
    assert summary.users == 2 and summary.missing == []
    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    assert sorted(contents.users) == ["user00001", "user00003"]
    plan = await transfer.plan_restore(file_service, contents, users=["user00003", "nobody"])
    assert [c.user_id for c in plan.changes] == ["user00003"] and plan.missing == ["nobody"]


async def test_existing_backup_file_is_kept_unless_forced(file_service, tmp_path):
    await seed(file_service, make_records(3))
    target = tmp_path / "b.ccbackup"
    target.write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        await transfer.backup(file_service, target, PASS, kdf=WEAK)
    assert target.read_bytes() == b"precious"
    await transfer.backup(file_service, target, PASS, kdf=WEAK, force=True)
    assert target.read_bytes().startswith(MAGIC)


# -- the dry-run diff and the overwrite modes ---------------------------------------------

async def _diff_scene(service: AuthService, tmp_path: Path) -> tuple[Path, dict[str, TokenRecord]]:
    """A backup of five users, then the store moved on: one of each kind of change."""
    base = time.time() - 1000
    backed = make_records(5, base=base, prefix="k")
    uids = [r.user_id for r in backed]   # k00000 new, k00001 older, k00002 newer, k00003 conflict, k00004 same
    await seed(service, backed)
    target = tmp_path / "diff.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    stored = {r.user_id: r for r in await service.store.primary.list(secrets=True)}
    await service.store.delete(uids[0])
    # older: the stored row was written before the backup's copy
    await service.store.put_many([stored[uids[1]].evolve(access_token="sk-ant-oat01-stored-older",
                                                         updated_at=stored[uids[1]].updated_at - 100)])
    # newer: a refresh after the backup
    await service.store.put_many([stored[uids[2]].evolve(access_token="sk-ant-oat01-stored-newer",
                                                         updated_at=stored[uids[2]].updated_at + 100)])
    # conflict: another Claude account under the same user id
    await service.store.put_many([stored[uids[3]].evolve(access_token="sk-ant-oat01-other-account",
                                                         account_uuid="someone-else")])
    return target, {r.user_id: r for r in backed}


@pytest.mark.parametrize("mode, expected_actions", [
    ("newer", {"new": "add", "older": "replace", "newer": "keep", "conflict": "keep", "same": "none"}),
    ("always", {"new": "add", "older": "replace", "newer": "replace", "conflict": "replace", "same": "none"}),
    ("never", {"new": "add", "older": "keep", "newer": "keep", "conflict": "keep", "same": "none"}),
])
async def test_dry_run_diff_and_overwrite_modes(any_service, tmp_path, mode, expected_actions):
    service = any_service
    target, backed = await _diff_scene(service, tmp_path)
    kinds = dict(zip(sorted(backed), ["new", "older", "newer", "conflict", "same"]))
    before_rows = {r.user_id: comparable(r) for r in await service.store.primary.list(secrets=True)}
    before_file = store_bytes(service)

    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    plan = await transfer.plan_restore(service, contents, overwrite=mode)
    assert {c.user_id: c.kind for c in plan.changes} == kinds
    assert {c.kind: c.action for c in plan.changes} == expected_actions
    assert plan.counts() == {"new": 1, "older": 1, "newer": 1, "conflict": 1, "same": 1, "invalid": 0}
    conflict = next(c for c in plan.changes if c.kind == "conflict")
    assert "another Claude account" in conflict.reason
    # The plan alone wrote nothing.
    assert {r.user_id: comparable(r) for r in await service.store.primary.list(secrets=True)} == before_rows
    assert store_bytes(service) == before_file

    result = await transfer.apply_restore(service, plan)
    replaced = {uid for uid, kind in kinds.items() if expected_actions[kind] in ("add", "replace")}
    assert set(result.written) == replaced
    after = {r.user_id: r for r in await service.store.primary.list(secrets=True)}
    for uid, kind in kinds.items():
        if uid in replaced:
            assert after[uid].access_token == backed[uid].access_token, (mode, kind)
            assert after[uid].updated_at == pytest.approx(backed[uid].updated_at, abs=1e-5)
        elif kind != "new":
            assert comparable(after[uid]) == before_rows[uid], (mode, kind)


async def test_same_time_different_expiry_is_a_conflict():
    backup = TokenRecord("u", "a", expires_at=1000.0, updated_at=500.0)
    stored = backup.evolve(access_token="b", expires_at=2000.0)
    change = transfer.classify(backup, stored, "newer")
    assert (change.kind, change.action) == ("conflict", "keep")
    assert transfer.classify(backup, stored, "always").action == "replace"
    assert transfer.classify(backup, backup.evolve(updated_at=500.0002), "newer").kind == "same"


async def test_unknown_overwrite_mode(file_service, tmp_path):
    await seed(file_service, make_records(1))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(file_service, target, PASS, kdf=WEAK)
    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    with pytest.raises(UsageError, match="overwrite"):
        await transfer.plan_restore(file_service, contents, overwrite="sometimes")


# -- opening and planning at once ---------------------------------------------------------------

async def test_open_and_plan_reads_the_store_while_the_key_is_derived(any_service, tmp_path, monkeypatch):
    """The store is listed while the KDF runs (the listing is over before the key is), and the
    plan is the one the two steps make in turn."""
    import threading

    from console.transfer import sealed

    service = any_service
    stored = await seed(service, make_records(8))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    await service.store.delete("user00002")
    await service.store.put_many([stored["user00005"].evolve(updated_at=stored["user00005"].updated_at - 100)])
    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    one_by_one = await transfer.plan_restore(service, contents, users=["user00002", "user00005", "ghost"])

    listed = threading.Event()
    primary, derive = service.store.primary, sealed.derive_key
    real_list = primary.list

    async def listing(secrets: bool = False):
        found = await real_list(secrets)
        listed.set()
        return found

    def deriving(*args):
        assert listed.wait(10), "the store was not read while the key was derived"
        return derive(*args)

    monkeypatch.setattr(primary, "list", listing)
    monkeypatch.setattr(sealed, "derive_key", deriving)
    opened, plan = await transfer.open_and_plan(service, target, PASS, users=["user00002", "user00005", "ghost"],
                                                allow_weak_kdf=True)
    assert [r.user_id for r in opened.records] == [r.user_id for r in contents.records]
    assert plan.to_dict() == one_by_one.to_dict()
    assert {c.user_id: c.kind for c in plan.changes} == {"user00002": "new", "user00005": "older"}


async def test_open_and_plan_fails_as_the_two_steps_would(file_service, tmp_path, monkeypatch):
    """The file's error first (a wrong passphrase while the store is down too), then the store's;
    a bad mode before any work."""
    from console.errors import StorageError

    service = file_service
    await seed(service, make_records(3))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)

    async def down(secrets: bool = False):
        raise StorageError("the store is down")

    monkeypatch.setattr(service.store.primary, "list", down)
    with pytest.raises(UsageError, match="overwrite"):
        await transfer.open_and_plan(service, target, PASS, overwrite="sometimes", allow_weak_kdf=True)
    with pytest.raises(WrongPassphrase):
        await transfer.open_and_plan(service, target, "not the passphrase", allow_weak_kdf=True)
    with pytest.raises(StorageError, match="down"):
        await transfer.open_and_plan(service, target, PASS, allow_weak_kdf=True)


# -- the audit trail of a restore -----------------------------------------------------------

async def test_restore_audits_exactly_the_users_it_wrote(any_service, tmp_path):
    """One ``restore`` event per user written, saying what it did, by the service's actor; none
    for a user kept because it changed after the plan, none for a user left as it was."""
    service = any_service
    stored = await seed(service, make_records(6))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    await service.store.delete("user00001")                       # new: added
    for uid in ("user00002", "user00003"):                        # older: replaced
        await service.store.put_many([stored[uid].evolve(updated_at=stored[uid].updated_at - 100)])
    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    plan = await transfer.plan_restore(service, contents)
    assert {c.user_id: c.kind for c in plan.to_write} == {"user00001": "new", "user00002": "older",
                                                         "user00003": "older"}
    meanwhile = await service.store.primary.get("user00003")      # a write lands after the plan
    await service.store.put(meanwhile.evolve(access_token="sk-ant-oat01-meanwhile"), meanwhile.version)
    before = len(await service.audit_trail(limit=1000))

    result = await transfer.apply_restore(service, plan, batch_size=2)
    assert sorted(result.written) == ["user00001", "user00002"] and result.changed_meanwhile == ["user00003"]
    trail = (await service.audit_trail(limit=1000))[:-before or None]
    assert sorted((e.user_id, e.action, e.ok, e.detail, e.actor) for e in trail) == [
        ("user00001", "restore", True, "from b.ccbackup (added)", service.actor),
        ("user00002", "restore", True, "from b.ccbackup (replaced an older token)", service.actor)]


async def test_restore_write_and_its_audit_commit_together(pg_service, tmp_path):
    """On PostgreSQL a batch's audit rows are inserted by the statement that writes it: when
    they cannot be, the batch is not written either (no change lands unaudited)."""
    import asyncpg

    service = pg_service
    await seed(service, make_records(4))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    await wipe(service)
    conn = await asyncpg.connect(service.store.primary.dsn)
    try:
        await conn.execute("""ALTER TABLE "LiteLLM_ClaudeOAuthAudit"
                              ADD CONSTRAINT no_restores CHECK (action <> 'restore')""")
        contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
        plan = await transfer.plan_restore(service, contents)
        with pytest.raises(asyncpg.CheckViolationError):
            await transfer.apply_restore(service, plan)
        assert await service.store.primary.list() == []
        await conn.execute('ALTER TABLE "LiteLLM_ClaudeOAuthAudit" DROP CONSTRAINT no_restores')
    finally:
        await conn.close()
    result = await transfer.apply_restore(service, plan)
    assert len(result.written) == 4
    assert {e.user_id for e in await service.audit_trail(limit=10) if e.action == "restore"} == set(result.written)


# -- a refresh that lands during a restore ----------------------------------------------------

async def test_refresh_during_restore_keeps_the_newer_token(any_service, tmp_path, login, emulator):
    service = any_service
    await login(service, "alice")
    await login(service, "bob")
    target = tmp_path / "b.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    # The stored rows become older than the backup's (as after a bad change), so the plan
    # replaces them; then a refresh lands between the plan and the write.
    for uid in ("alice", "bob"):
        record = await service.get_record(uid)
        await service.store.put_many([record.evolve(updated_at=record.updated_at - 600)])
    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    plan = await transfer.plan_restore(service, contents, overwrite="always")
    assert {c.user_id: c.action for c in plan.changes} == {"alice": "replace", "bob": "replace"}
    refreshed = await service.refresh("alice", force=True)
    assert emulator.stats()["refresh_requests"] == 1
    result = await transfer.apply_restore(service, plan)
    assert result.written == ["bob"] and result.changed_meanwhile == ["alice"]
    service.forget()
    kept = await service.get_record("alice")
    assert kept.access_token == refreshed.access_token and kept.refresh_token == refreshed.refresh_token
    assert kept.version == refreshed.version
    # The restored backup token for bob still works; alice's refresh token was not rolled back.
    assert await service.refresh("alice", force=True)
    assert emulator.stats()["refresh_requests"] == 2


# -- damaged files and wrong passphrases: one clear error, nothing written ------------------

@pytest.fixture
async def damage_scene(file_service, tmp_path):
    await seed(file_service, make_records(20))
    target = tmp_path / "b.ccbackup"
    await transfer.backup(file_service, target, PASS, kdf=WEAK)
    await file_service.store.delete("user00004")  # a restore would add this user back
    return file_service, target, target.read_bytes()


async def _assert_refused(service: AuthService, path: Path, error, match: str, passphrase: str = PASS):
    before, trail = store_bytes(service), await service.audit_trail(limit=1000)
    with pytest.raises(error, match=match) as info:
        contents = await transfer.open_backup(path, passphrase, allow_weak_kdf=True)
        plan = await transfer.plan_restore(service, contents)
        await transfer.apply_restore(service, plan)
    assert "\n" not in str(info.value)
    assert store_bytes(service) == before and await service.audit_trail(limit=1000) == trail
    assert await service.get_record("user00004") is None
    return info.value


async def test_wrong_passphrase(damage_scene):
    service, target, _ = damage_scene
    await _assert_refused(service, target, WrongPassphrase, "wrong passphrase", passphrase="not it at all")


@pytest.mark.parametrize("where", ["body start", "body middle", "tag", "nonce in header", "header created_at"])
async def test_tampered_byte(damage_scene, where):
    service, target, data = damage_scene
    head_len = struct.unpack_from(">8sHI", data)[2]
    body = 14 + head_len
    header = data[14:body].decode()
    if where == "body start":
        at = body
    elif where == "body middle":
        at = body + (len(data) - body) // 2
    elif where == "tag":
        at = len(data) - 1
    elif where == "nonce in header":
        at = 14 + header.index('"nonce":"') + 10
    else:
        at = 14 + header.index('"created_at":') + 14
    broken = bytearray(data)
    broken[at] = ord("7") if broken[at] != ord("7") else ord("8")
    target.write_bytes(bytes(broken))
    await _assert_refused(service, target, BackupCorrupt, "changed or is truncated")


async def test_tampered_kdf_parameters_are_not_a_silent_success(damage_scene):
    service, target, data = damage_scene
    target.write_bytes(data.replace(b'"n":1024', b'"n":2048', 1))
    await _assert_refused(service, target, WrongPassphrase, "header was changed")


@pytest.mark.parametrize("keep", [0, 5, 13, 40, -1, -17])
async def test_truncated_file(damage_scene, keep):
    service, target, data = damage_scene
    target.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    error = BackupError if keep == 0 else BackupCorrupt
    await _assert_refused(service, target, error, "truncated|not a claude-console backup|damaged")


async def test_not_a_backup_and_sql_hint(file_service, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello, this is not a backup at all")
    with pytest.raises(BackupError, match="not a claude-console backup"):
        await transfer.open_backup(other, PASS)
    sql = tmp_path / "dump.sql"
    sql.write_text("-- claude-console SQL backup\nBEGIN;\n")
    with pytest.raises(BackupError, match="psql"):
        await transfer.open_backup(sql, PASS)
    with pytest.raises(UsageError, match="does not exist"):
        await transfer.open_backup(tmp_path / "missing.ccbackup", PASS)


# -- the KDF ---------------------------------------------------------------------------------

def test_weak_kdf_refused_unless_allowed_and_huge_kdf_refused():
    sealed = seal(b"{}", PASS, kdf=WEAK)
    with pytest.raises(BackupError, match="below the minimum"):
        open_sealed(sealed, PASS, "f")
    header, payload = open_sealed(sealed, PASS, "f", allow_weak_kdf=True)
    assert payload == b"{}" and header["kdf"]["n"] == 2 ** 10
    huge = with_header(seal(b"{}", PASS, kdf=WEAK), lambda h: h["kdf"].update(n=2 ** 30))
    with pytest.raises(BackupError, match="1 GiB"):
        open_sealed(huge, PASS, "f", allow_weak_kdf=True)


async def test_default_kdf_is_scrypt_2_17_recorded_in_the_header(file_service, tmp_path):
    await seed(file_service, make_records(2))
    target = tmp_path / "real.ccbackup"
    summary = await transfer.backup(file_service, target, PASS)   # the real parameters: ~0.3 s each way
    header, _, _ = read_header(target.read_bytes(), "real")
    assert header["kdf"]["name"] == "scrypt"
    assert (header["kdf"]["n"], header["kdf"]["r"], header["kdf"]["p"]) == (2 ** 17, 8, 1)
    assert len(_unb64(header["kdf"]["salt"], "salt", "real")) == 16
    assert summary.kdf == "scrypt n=2^17 r=8 p=1"
    contents = await transfer.open_backup(target, PASS)   # no test-only flag needed
    assert len(contents.records) == 2


def test_argon2id_round_trip():
    sealed = seal(b'{"x":1}', PASS, kdf=ARGON2ID)
    header, payload = open_sealed(sealed, PASS, "f")
    assert payload == b'{"x":1}' and header["kdf"]["memory_kib"] >= 64 * 1024
    with pytest.raises(WrongPassphrase):
        open_sealed(sealed, "another passphrase", "f")


# -- SQL backups ------------------------------------------------------------------------------

async def test_sql_format_needs_postgres(file_service, tmp_path):
    await seed(file_service, make_records(1))
    with pytest.raises(UsageError, match="PostgreSQL"):
        await transfer.backup(file_service, tmp_path / "b.sql", None, fmt="sql")
    assert not (tmp_path / "b.sql").exists()


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
async def test_sql_backup_restores_with_psql(pg_service, pg_dsn, tmp_path):
    service = pg_service
    await seed(service, make_records(50))
    before = {r.user_id: comparable(r) for r in await service.store.primary.list(secrets=True)}
    names, rows = await service.store.primary.export_rows()
    ciphertext = {r[0]: r[1] for r in rows}
    target = tmp_path / "tokens.sql"
    summary = await transfer.backup(service, target, None, fmt="sql")
    assert summary.users == 50 and stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_text()
    assert all(c in text for c in list(ciphertext.values())[:5])   # still under the store's key
    assert "sk-ant-oat01-" not in text
    await wipe(service)

    def psql() -> str:
        done = subprocess.run(["psql", pg_dsn, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(target)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    psql()
    after = {r.user_id: comparable(r) for r in await service.store.primary.list(secrets=True)}
    assert after.keys() == before.keys()
    assert all({**after[u], "version": 0} == {**before[u], "version": 0} for u in before)
    # A newer row is kept by the script; running it again changes nothing else.
    record = await service.get_record("user00001")
    await service.store.put(record.evolve(access_token="sk-ant-oat01-newer-than-the-dump"))
    psql()
    assert (await service.get_record("user00001")).access_token == "sk-ant-oat01-newer-than-the-dump"


# -- the cache is told ---------------------------------------------------------------------------

async def test_restore_invalidates_the_redis_cache(keyed_env, redis_url, tmp_path, monkeypatch):
    url, prefix = redis_url
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("REDIS_PREFIX", prefix)
    writer, reader = AuthService(load_settings()), AuthService(load_settings())
    try:
        assert writer.store.cache is not None
        old = make_records(1, prefix="c")[0]
        await seed(writer, [old])
        target = tmp_path / "b.ccbackup"
        await transfer.backup(writer, target, PASS, kdf=WEAK)
        stored = await writer.store.primary.get(old.user_id)
        await writer.store.put_many([stored.evolve(access_token="sk-ant-oat01-stale-in-cache",
                                                   updated_at=stored.updated_at - 50)])
        assert await reader.get_access_token(old.user_id) == "sk-ant-oat01-stale-in-cache"  # now cached
        _, result = await restore(writer, target)
        assert result.written == [old.user_id]
        reader.forget()   # the memory tier aside: Redis must not hand back the stale token
        assert (await reader.store.get(old.user_id)).access_token == old.access_token
    finally:
        await writer.aclose()
        await reader.aclose()


def test_payload_is_columnar_json():
    columns = {name: [] for name in PAYLOAD_FIELDS}
    payload = json.loads(encode_payload(columns, "file", 1.0))
    assert payload["kind"] == PAYLOAD_KIND and payload["fields"] == list(PAYLOAD_FIELDS)


def test_bulk_crypto_matches_one_by_one():
    from console.crypto import Keyring
    from console.errors import CryptoError, UnknownKey

    new, old = generate_key(), generate_key()
    ring, retired = Keyring.from_spec(f"{new},{old}"), Keyring.from_spec(old)
    values = [f"sk-ant-oat01-{i}-{os.urandom(8).hex()}" for i in range(50)] + [None, ""]
    users = [f"u{i}" for i in range(len(values))]
    sealed = ring.encrypt_many(values, users)
    sealed[7] = retired.encrypt(values[7], users[7])          # an older key: still read
    sealed[8] = values[8]                                      # plaintext: passed through
    assert [ring.decrypt(v, u) if v else v for v, u in zip(sealed, users)] == values
    assert ring.decrypt_many(sealed, users) == values
    assert sealed[51] == "" and sealed[50] is None
    with pytest.raises(CryptoError, match="u1"):                # copied onto another user: refused
        ring.decrypt_many([sealed[0]], ["u1"])
    with pytest.raises(UnknownKey):
        retired.decrypt_many([sealed[0]], ["u0"])


def test_pair_crypto_matches_one_by_one():
    """The backup's and the restore's two-column paths give what the one-column paths give,
    off the fast path too (another key, plaintext, missing values, a row moved to another user)."""
    from console.crypto import Keyring
    from console.errors import CryptoError

    new, old = generate_key(), generate_key()
    ring, retired = Keyring.from_spec(f"{new},{old}"), Keyring.from_spec(old)
    access = [f"sk-ant-oat01-{i}-{os.urandom(8).hex()}" for i in range(40)] + ["", "sk-ant-oat01-é"]
    refresh = [None if i % 5 == 2 else f"sk-ant-ort01-{i}" for i in range(40)] + ["", "sk-ant-ort01-\"q\""]
    users = [f"u{i}" for i in range(len(access))]
    sealed_a, sealed_r = ring.encrypt_pair(access, refresh, users)
    assert [ring.decrypt(v, u) if v else v for v, u in zip(sealed_a, users)] == access
    assert [ring.decrypt(v, u) if v else v for v, u in zip(sealed_r, users)] == refresh
    sealed_a[7] = retired.encrypt(access[7], users[7])
    sealed_r[8] = refresh[8]                                   # plaintext: passed through
    assert ring.decrypt_pair(sealed_a, sealed_r, users) == (access, refresh)
    raw = ring.decrypt_pair(sealed_a, sealed_r, users, raw=True)
    assert raw == ([v.encode() for v in access], [v if v is None else v.encode() for v in refresh])
    with pytest.raises(CryptoError, match="u1"):                # copied onto another user: refused
        ring.decrypt_pair([sealed_a[0]], [sealed_r[0]], ["u1"])


def test_decoded_records_hold_floats_and_a_list_of_scopes_each():
    """What a payload may hold (whole numbers, nulls, missing columns) becomes the record's own
    types: times are floats, a null time stays null (expiry: 0), every record has its own list."""
    from console.transfer.payload import decode_payload

    columns = {"user_id": ["a", "b", "c"], "access_token": ["sk-ant-oat01-a", "sk-ant-oat01-b", "sk-ant-oat01-c"],
               "expires_at": [1900000000, None, 1900000000.5], "scopes": [["user:inference"], None, None],
               "created_at": [1800000000, 1800000000.25, None], "updated_by": ["x", None, "y"]}
    contents = decode_payload(encode_payload(columns, "file", 1.0), "f", {})
    a, b, c = contents.records
    assert [type(r.expires_at) for r in (a, b, c)] == [float] * 3 and b.expires_at == 0.0
    assert type(a.created_at) is float and c.created_at is None
    assert (a.scopes, b.scopes, c.scopes) == (["user:inference"], [], []) and b.scopes is not c.scopes
    assert (a.refresh_token, a.refresh_count, a.needs_login, a.source) == (None, 0, False, "")
    assert contents.authors == {"a": (None, "x"), "b": (None, None), "c": (None, "y")}


def test_json_strings_is_json():
    from console.transfer.payload import json_strings

    for values in ([], ["a", "b"], ["a", None, ""], ['q"uote', "back\\slash", "tab\t", "é", "\x7f"], [None]):
        raw = [v if v is None else v.encode() for v in values]
        assert json.loads(json_strings(raw)) == values


async def test_export_columns_match_export_rows(pg_service):
    """The JSON arrays PostgreSQL builds for a backup hold what a row-by-row read holds."""
    service = pg_service
    await seed(service, make_records(60))
    primary = service.store.primary
    names, rows = await primary.export_rows()
    by_user = {r[0]: dict(zip(names, r)) for r in rows}

    def clear(uids, access, refresh):
        return uids, *primary.keyring.decrypt_pair(access, refresh, uids)

    (uids, access, refresh), texts = await primary.export_columns(None, clear)
    assert uids == sorted(by_user)
    for name, text in texts.items():
        assert json.loads(text) == [by_user[u][name] for u in uids], name
    assert access == [primary.keyring.decrypt(by_user[u]["access_token"], u) for u in uids]
    (some, _, _), texts = await primary.export_columns(["user00003", "user00001", "nobody"], clear)
    assert some == ["user00001", "user00003"] and json.loads(texts["user_id"]) == some


async def test_backup_reads_rows_when_columns_do_not_line_up(pg_service, tmp_path, monkeypatch):
    """``export_columns`` answering None (its two reads did not line up, or no shared snapshot):
    the backup reads the rows in one query instead and holds the same users."""
    service = pg_service
    before = await seed(service, make_records(30))
    primary = service.store.primary

    async def unaligned(users, tokens):
        return None

    monkeypatch.setattr(primary, "export_columns", unaligned)
    target = tmp_path / "rows.ccbackup"
    assert (await transfer.backup(service, target, PASS, kdf=WEAK)).users == 30
    contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
    assert {r.user_id: r.access_token for r in contents.records} == {u: r.access_token for u, r in before.items()}
