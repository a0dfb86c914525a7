"""The schema's migrations against the real server: shipped in order, applied once, safe by hand."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from console.crypto import Keyring
from console.errors import StorageError
from console.store.postgres import MIGRATIONS, PostgresTier, apply_migrations, migrations

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[3]


# -- migrations ------------------------------------------------------------------------------

def test_root_migration_is_the_first_shipped_migration():
    shipped = migrations()
    assert [m.id[:4] for m in shipped] == [f"{i:04d}" for i in range(1, len(shipped) + 1)]
    root = (ROOT / "migrations" / "add_claude_oauth_tokens.sql").read_text()
    assert root == shipped[0].sql


async def test_migrations_are_idempotent_and_recorded(pg_dsn, tier, connect):
    applied = await tier.migrate()
    assert applied == [m.id for m in migrations()]
    assert await tier.migrate() == []
    conn = await connect(pg_dsn)
    try:
        for m in migrations():  # by hand, again, as psql -f would: no error, no change
            await conn.execute(m.sql)
        rows = await conn.fetch(f"SELECT id FROM {MIGRATIONS} ORDER BY id")
        assert [r[0] for r in rows] == [m.id for m in migrations()]
    finally:
        await conn.close()


async def test_concurrent_starts_apply_each_migration_once(pg_dsn, connect):
    conns = [await connect(pg_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*[apply_migrations(c) for c in conns])
        ran = [mid for result in results for mid in result]
        assert sorted(ran) == [m.id for m in migrations()]  # each exactly once, no error
    finally:
        for c in conns:
            await c.close()


def test_root_file_runs_with_psql_twice(pg_dsn):
    psql = subprocess.run(["which", "psql"], capture_output=True, text=True).stdout.strip()
    if not psql:
        pytest.skip("psql is not installed")
    for _ in range(2):
        done = subprocess.run([psql, "-v", "ON_ERROR_STOP=1", "-q", "-d", pg_dsn, "-f",
                               str(ROOT / "migrations" / "add_claude_oauth_tokens.sql")],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


async def test_a_failing_migration_is_one_line_and_changes_nothing(pg_dsn, key, connect):
    conn = await connect(pg_dsn)
    try:  # a table in the way, with a column of the wrong type: 0001 cannot add its foreign key
        await conn.execute('CREATE TABLE "LiteLLM_UserTable" (user_id INTEGER PRIMARY KEY)')
        tier = PostgresTier(pg_dsn, Keyring.from_spec(key))
        try:
            with pytest.raises(StorageError, match="migration 0001_claude_oauth_tokens failed") as caught:
                await tier.get("alice")
            assert "\n" not in str(caught.value)
        finally:
            await tier.close()
        assert await conn.fetchval("SELECT to_regclass('\"LiteLLM_ClaudeOAuthTokens\"')") is None
    finally:
        await conn.close()
