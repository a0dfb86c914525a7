"""Hostile restores, imports and backup files (issue 13), through the CLI, on the file tier and
PostgreSQL: invalid ids and values are refused per user in the plan and the valid users are
written; a hostile header is refused at once; every refusal is one line; no ``None``."""

from __future__ import annotations

import json
import struct
import time

import pytest

from console.transfer.payload import encode_payload
from console.transfer.sealed import seal

from inputs_kit import run_main, store_digest

PASS = "correct horse battery"
NOW = time.time()


def good(uid: str, **change) -> dict:
    row = {"user_id": uid, "access_token": f"sk-ant-oat01-{uid}-" + "a" * 30,
           "refresh_token": "sk-ant-ort01-" + "b" * 30, "expires_at": NOW + 3600, "scopes": ["user:inference"],
           "updated_at": NOW - 60, "created_at": NOW - 600}
    row.update(change)
    return row


# (row in the backup, words its refusal line holds)
HOSTILE_ROWS = [
    (good("u" * 300), "user id is 300 characters long; the limit is 256"),
    (good(""), "user id is empty"),
    (good("eve\x1b[2J"), "user id contains control characters"),
    (good(5), "user id is not text"),
    (good("carol", expires_at=float("nan")), "expires_at is not a finite number"),
    (good("dave", expires_at=1e308), "expires_at 1e+308 is not a time between the years 2000 and 2100"),
    (good("frank", scopes=5), "scopes is not a list of strings"),
    (good("grace", access_token=42), "access_token is missing or not text"),
    (good("heidi", refresh_token="x" * 20000), "refresh_token is not text of at most"),
    (good("ivan", updated_at="yesterday"), "updated_at is not a number of seconds"),
]
VALID = ["alice", "bob"]


def write_backup(path, rows: list[dict], kdf: dict | None = None) -> None:
    names = sorted({k for row in rows for k in row})
    columns = {name: [row.get(name) for row in rows] for name in names}
    payload = encode_payload(columns, "file", NOW)
    path.write_bytes(seal(payload, PASS, kdf=kdf, info={"created_at": NOW, "producer": "claude-console"}))


@pytest.fixture(params=["file", "postgres"])
def store_env(request, console_env, monkeypatch):
    monkeypatch.setenv("BACKUP_PASS", PASS)
    env = request.getfixturevalue("pg_env") if request.param == "postgres" else console_env
    assert run_main(["users"]).code == 0   # the schema and folders exist before the digests
    return env


def test_a_restore_refuses_invalid_users_one_by_one_and_writes_the_rest(store_env, tmp_path):
    target = tmp_path / "hostile.ccbackup"
    write_backup(target, [good(u) for u in VALID] + [row for row, _ in HOSTILE_ROWS])
    before = store_digest(store_env)

    dry = run_main(["restore", str(target), "--dry-run", "--passphrase-env", "BACKUP_PASS"])
    assert dry.code == 1 and "Traceback" not in dry.err and "None" not in dry.out + dry.err, dry
    assert f"  invalid   {len(HOSTILE_ROWS):>7}  an invalid user id or value: refused" in dry.out, dry.out
    refusals = [line for line in dry.out.splitlines() if line.startswith("  user '")]
    assert len(refusals) == len(HOSTILE_ROWS)
    for _, words in HOSTILE_ROWS:
        assert sum(words in line for line in refusals) == 1, (words, refusals)
    assert "\x1b" not in dry.out and store_digest(store_env) == before

    as_json = run_main(["restore", str(target), "--dry-run", "--json", "--passphrase-env", "BACKUP_PASS"])
    plan = json.loads(as_json.out)["plan"]
    promised = sorted(c["user_id"] for c in plan["changes"] if c["action"] in ("add", "replace"))
    assert promised == VALID and plan["counts"]["invalid"] == len(HOSTILE_ROWS)

    wet = run_main(["restore", str(target), "--yes", "--passphrase-env", "BACKUP_PASS"])
    assert wet.code == 1 and "Traceback" not in wet.err and "None" not in wet.out + wet.err, wet
    assert f"Restored 2 users in 1 batch (" in wet.out and f"{len(HOSTILE_ROWS)} refused." in wet.out, wet.out
    listing = run_main(["users", "--json"])
    assert sorted(u["user_id"] for u in json.loads(listing.out)) == promised   # what the dry run said


@pytest.mark.parametrize("row,words", HOSTILE_ROWS[:3] + HOSTILE_ROWS[4:6], ids=lambda v: str(v)[:20])
def test_a_backup_of_only_bad_users_writes_nothing(store_env, tmp_path, row, words):
    target = tmp_path / "one.ccbackup"
    write_backup(target, [row])
    before = store_digest(store_env)
    result = run_main(["restore", str(target), "--yes", "--passphrase-env", "BACKUP_PASS"])
    assert result.code == 1 and words in result.out and "Nothing to restore: nothing was written." in result.out
    assert store_digest(store_env) == before


def test_backup_of_a_user_who_is_not_stored_refuses_before_writing(store_env, tmp_path):
    target = tmp_path / "b.ccbackup"
    before = store_digest(store_env)
    result = run_main(["backup", str(target), "--user", "nosuchuser", "--passphrase-env", "BACKUP_PASS"])
    assert result.code == 1 and result.err_lines == [
        "error: user 'nosuchuser' is not stored, so nothing was backed up; list the stored users with: "
        "claude-console users"], result
    assert not target.exists() and store_digest(store_env) == before


def _with_raw_header(data: bytes, head: bytes) -> bytes:
    magic, version, length = struct.unpack_from(">8sHI", data)
    return struct.pack(">8sHI", magic, version, len(head)) + head + data[14 + length:]


def _header_of(data: bytes) -> dict:
    return json.loads(data[14:14 + struct.unpack_from(">8sHI", data)[2]])


def _kdf(**kdf) -> bytes:
    return lambda h: json.dumps({**h, "kdf": {**kdf, "salt": h["kdf"]["salt"]}}).encode()


# (how the file is changed, exit code, words of the one line)
HOSTILE_FILES = [
    (_kdf(name="argon2id", memory_kib=1024 * 1024, iterations=64, lanes=4), 1, "beyond what this console allows"),
    (_kdf(name="argon2id", memory_kib=4 * 1024 * 1024, iterations=3, lanes=4), 1, "beyond what this console allows"),
    (_kdf(name="argon2id", memory_kib=65536, iterations=3, lanes=100000), 1, "beyond what this console allows"),
    (_kdf(name="scrypt", n=2 ** 30, r=8, p=1), 1, "beyond what this console allows"),
    (_kdf(name="scrypt", n=float("inf"), r=8, p=1), 1, "its scrypt parameters are incomplete"),
    (_kdf(name="bcrypt\x1b[2J"), 1, "uses the key derivation 'bcrypt\\x1b[2J'"),
    (lambda h: json.dumps({**h, "kdf": None}).encode(), 1, "its header names no key derivation"),
    (lambda h: b"[" * 30000 + b"]" * 30000, 1, "its header nests deeper than a backup header does"),
    (lambda h: b'{"a":' * 5000 + b"1" + b"}" * 5000, 1, "its header nests deeper"),
    (lambda h: b"\xff\xfe not json", 1, "its header is not readable"),
]


@pytest.mark.parametrize("change,code,words", HOSTILE_FILES, ids=[w[2][:28] + str(i) for i, w in
                                                                   enumerate(HOSTILE_FILES)])
def test_hostile_headers_are_refused_at_once_in_one_line(console_env, tmp_path, monkeypatch, change, code, words):
    monkeypatch.setenv("BACKUP_PASS", PASS)
    target = tmp_path / "hostile.ccbackup"
    write_backup(target, [good("alice")])
    data = target.read_bytes()
    target.write_bytes(_with_raw_header(data, change(_header_of(data))))
    before = store_digest(console_env)
    started = time.monotonic()
    result = run_main(["restore", str(target), "--dry-run", "--passphrase-env", "BACKUP_PASS"])
    assert time.monotonic() - started < 5
    assert result.code == code and len(result.err_lines) == 1 and words in result.err_lines[0], result
    assert "None" not in result.err and "\x1b" not in result.err and not result.out
    assert store_digest(console_env) == before


@pytest.mark.parametrize("data,words", [
    (b"", "is not a claude-console backup"),
    (b"CCBACK", "is truncated (it ends inside the header)"),
    (b"CCBACKUP\x00\x01\x00\x00\x00\x40{", "is truncated"),
    (b"CCBACKUP\x00\x01\xff\xff\xff\xff" + b"x" * 100, "its header length is implausible"),
    (b"CCBACKUP\x00\x09\x00\x00\x00\x02{}" + b"x" * 40, "is backup format 9"),
    (bytes(range(256)) * 10, "is not a claude-console backup"),
])
def test_truncated_and_garbage_files_are_one_line(console_env, tmp_path, monkeypatch, data, words):
    monkeypatch.setenv("BACKUP_PASS", PASS)
    target = tmp_path / "garbage.ccbackup"
    target.write_bytes(data)
    before = store_digest(console_env)
    result = run_main(["restore", str(target), "--passphrase-env", "BACKUP_PASS"])
    assert result.code == 1 and len(result.err_lines) == 1 and words in result.err_lines[0], result
    assert "None" not in result.err and store_digest(console_env) == before


IMPORT_ROWS = [
    ({"accessToken": "sk-ant-oat01-x", "expiresAt": "soon"}, "expiresAt 'soon' is not a time"),
    ({"accessToken": "sk-ant-oat01-x", "expiresAt": 1e308}, "is not a time"),
    ({"accessToken": "sk-ant-oat01-x", "scopes": [1, 2]}, "scopes is not a list of strings"),
    ({"accessToken": "sk-ant-oat01-x", "scopes": {"a": 1}}, "scopes is not a list of strings"),
    ({"accessToken": "sk-ant-oat01-x", "refreshToken": 7}, "refresh_token is not text"),
    ({"accessToken": "x" * 20000}, "access_token is longer than"),
    ({"accessToken": "tok\x1b[2J"}, "access_token holds characters a token never has"),
    ({"accessToken": 5}, "has no access token"),
    ({"accessToken": "sk-ant-oat01-x", "subscriptionType": ["max"]}, "subscription_type is not text"),
]


@pytest.mark.parametrize("doc,words", IMPORT_ROWS, ids=[w for _, w in IMPORT_ROWS])
def test_an_import_checks_each_value_and_names_the_field(store_env, tmp_path, doc, words):
    source = tmp_path / "token.json"
    source.write_text(json.dumps(doc))
    before = store_digest(store_env)
    result = run_main(["import", "file", str(source), "--user", "alice"])
    assert result.code == 2 and len(result.err_lines) == 1 and words in result.err_lines[0], result
    assert "None" not in result.err and "\x1b" not in result.err
    assert store_digest(store_env) == before
