"""backup, restore, import and export, driven as an operator would, in subprocesses.

These run the real KDF (scrypt n=2^17): the CLI has no way to weaken it, on purpose.
``run_cli`` also checks that no token ever reaches stdout or stderr.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time

from console.crypto import Keyring
from console.store.file import FileTier
from console.tokens import TokenRecord

PASS_ENV = {"BACKUP_PASSPHRASE": "a long enough passphrase"}


def seed_users(token_file, n: int) -> None:
    now = time.time()
    records = [TokenRecord(f"user{i:04d}", f"sk-ant-oat01-{i:012d}AAAAAAAA", f"sk-ant-ort01-{i:012d}BBBBBBBB",
                           now + 3600, ["user:inference"], account_email=f"u{i}@example.com",
                           created_at=now - 500, updated_at=now - 100) for i in range(n)]
    asyncio.run(FileTier(token_file, Keyring([])).put_many(records))


def test_backup_wipe_restore_with_progress(run_cli, token_file, tmp_path):
    seed_users(token_file, 1000)
    before = token_file.read_bytes()
    target = tmp_path / "all.ccbackup"
    done = run_cli("backup", str(target), "--passphrase-env", "BACKUP_PASSPHRASE", env=PASS_ENV)
    assert done.code == 0, done.err
    assert "Backed up 1000 users" in done.out and "0600" in done.out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    token_file.unlink()
    dry = run_cli("restore", str(target), "--dry-run", "--passphrase-env", "BACKUP_PASSPHRASE", env=PASS_ENV)
    assert dry.code == 0, dry.err
    assert "new" in dry.out and "1000" in dry.out and "Dry run: nothing was written." in dry.out
    assert "user0000" in dry.out and "… and 950 more" in dry.out
    assert not token_file.exists()

    done = run_cli("restore", str(target), "--passphrase-env", "BACKUP_PASSPHRASE", env=PASS_ENV)
    assert done.code == 0, done.err
    assert "Restored 1000 users" in done.out
    assert "writing: 1000/1000 users" in done.err       # progress of a big run, on stderr
    restored = json.loads(token_file.read_bytes())["users"]
    original = json.loads(before)["users"]
    assert restored.keys() == original.keys()
    assert all(restored[u]["access_token"] == original[u]["access_token"] for u in original)

    again = run_cli("restore", str(target), "--json", "--passphrase-env", "BACKUP_PASSPHRASE", env=PASS_ENV)
    assert again.code == 0, again.err
    report = again.json()
    assert report["plan"]["counts"]["same"] == 1000 and report["result"] is None

    audit = run_cli("audit", "--user", "user0007", "--json")
    assert [e["action"] for e in audit.json()][:1] == ["restore"]


def test_wrong_passphrase_is_one_line_and_writes_nothing(run_cli, token_file, tmp_path):
    seed_users(token_file, 3)
    target = tmp_path / "b.ccbackup"
    assert run_cli("backup", str(target), "--passphrase-env", "BACKUP_PASSPHRASE", env=PASS_ENV).code == 0
    token_file.unlink()
    bad = run_cli("restore", str(target), "--passphrase-env", "P", env={"P": "not the passphrase"})
    assert bad.code != 0
    assert len(bad.err_lines) == 1 and "wrong passphrase" in bad.err_lines[0]
    assert not token_file.exists()
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01
    target.write_bytes(bytes(data))
    bad = run_cli("restore", str(target), "--passphrase-env", "BACKUP_PASSPHRASE", env=PASS_ENV)
    assert bad.code != 0 and len(bad.err_lines) == 1 and "changed or is truncated" in bad.err_lines[0]
    assert not token_file.exists()


def test_passphrase_is_never_taken_from_argv(run_cli, token_file, tmp_path):
    seed_users(token_file, 1)
    target = tmp_path / "b.ccbackup"
    for args in (("backup", str(target), "--passphrase", "hunter2hunter2"),
                 ("backup", str(target), "--passphrase=hunter2hunter2"),
                 ("restore", str(target), "--passphrase", "hunter2hunter2"),
                 ("backup", str(target), "--passphrase-e", "hunter2hunter2")):
        done = run_cli(*args)
        assert done.code == 2, (args, done.err)
        assert "hunter2hunter2" not in done.out + done.err
        assert not target.exists()
    # --passphrase-env names a variable: a passphrase given there is refused, not echoed.
    done = run_cli("backup", str(target), "--passphrase-env", "my secret words")
    assert done.code == 2 and "my secret words" not in done.err and "NAME of an environment variable" in done.err
    # No terminal and no variable: refused with the way out.
    done = run_cli("backup", str(target))
    assert done.code == 2 and "--passphrase-env" in done.err
    done = run_cli("backup", str(target), "--passphrase-env", "SHORT", env={"SHORT": "abc"})
    assert done.code == 2 and "shorter than 8" in done.err
    assert not target.exists()


def test_sql_format_needs_postgres(run_cli, token_file, tmp_path):
    seed_users(token_file, 1)
    done = run_cli("backup", str(tmp_path / "b.sql"), "--format", "sql")
    assert done.code == 2 and "PostgreSQL" in done.err
    assert not (tmp_path / "b.sql").exists()


def test_import_and_export(run_cli, token_file, tmp_path, console_env):
    home = tmp_path / "home"
    creds = home / ".claude" / ".credentials.json"
    creds.parent.mkdir(parents=True)
    expires_ms = int((time.time() + 7200) * 1000)
    creds.write_text(json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-cccccccccccc",
                                                   "refreshToken": "sk-ant-ort01-dddddddddddd",
                                                   "expiresAt": expires_ms, "scopes": ["user:inference"],
                                                   "subscriptionType": "pro"}}))
    done = run_cli("import", "claude-code", "--user", "cc")
    assert done.code == 0, done.err
    assert "Imported user 'cc'" in done.out and "active" in done.out

    done = run_cli("import", "env", "--user", "fromenv",
                   env={"CLAUDE_ACCESS_TOKEN": "sk-ant-oat01-eeeeeeeeeeee", "CLAUDE_EXPIRES_AT": str(expires_ms)})
    assert done.code == 0, done.err
    assert "unset the CLAUDE_* variables" in done.out

    out = tmp_path / "cc.json"
    done = run_cli("export", "--user", "cc", str(out))
    assert done.code == 0, done.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = json.loads(out.read_text())
    assert data["accessToken"] == "sk-ant-oat01-cccccccccccc" and data["expiresAt"] == expires_ms // 1000

    done = run_cli("import", "file", str(out), "--user", "copy")
    assert done.code == 0, done.err
    status = run_cli("status", "--user", "copy", "--json").json()
    assert status["status"] == "active" and status["source"] == "file"

    missing = run_cli("import", "file", str(tmp_path / "none.json"))
    assert missing.code == 2 and len(missing.err_lines) == 1
    actions = [e["action"] for e in run_cli("audit", "--json").json()]
    assert actions.count("import") == 3 and actions.count("export") == 1
