"""The PostgreSQL tier against the real server: schema, encryption, compare-and-swap, the lock."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time

import pytest

from console.claude_oauth_db import ClaudeOAuthDatabase
from console.crypto import Keyring, generate_key
from console.errors import CryptoError, StaleWrite, TierUnavailable, UnknownKey
from console.store.base import AuditEvent, PendingLogin
from console.store.file import FileTier
from console.store.hierarchy import Hierarchy
from console.store.postgres import FIELDS, TOKENS, PostgresTier, connect_options, lock_key, migrations
from console.tokens import HIDDEN, TokenRecord

pytestmark = pytest.mark.postgres

ACCESS = "sk-ant-oat01-ACCESS-plaintext-marker-0123456789"
REFRESH = "sk-ant-ort01-REFRESH-plaintext-marker-0123456789"

# The seed's documented SQL, verbatim (docs/my-website/docs/proxy/claude_oauth.md and the Docker
# README of the seed). They must run unchanged against the migrated schema.
SEED_STATUS_UNQUOTED = """SELECT 
    u.user_id,
    u.user_email,
    t.expires_at,
    t.last_used,
    t.refresh_count,
    CASE 
        WHEN t.expires_at > NOW() THEN 'active'
        WHEN t.refresh_token_encrypted IS NOT NULL THEN 'expired_refreshable'
        ELSE 'expired'
    END AS status
FROM LiteLLM_UserTable u
LEFT JOIN LiteLLM_ClaudeOAuthTokens t ON u.user_id = t.user_id
WHERE u.claude_oauth_enabled = TRUE;"""
SEED_STATUS_QUOTED = """SELECT 
    u.user_id,
    u.user_email,
    t.expires_at,
    t.refresh_count,
    CASE 
        WHEN t.expires_at > NOW() THEN 'active'
        WHEN t.refresh_token_encrypted IS NOT NULL THEN 'expired_refreshable'
        ELSE 'expired'
    END AS status
FROM "LiteLLM_UserTable" u
LEFT JOIN "LiteLLM_ClaudeOAuthTokens" t ON u.user_id = t.user_id;"""
SEED_READS = [
    """SELECT 
    token_id,
    user_id,
    expires_at,
    last_used,
    refresh_count,
    created_at,
    updated_at
FROM "LiteLLM_ClaudeOAuthTokens";""",
    """SELECT * FROM "LiteLLM_ClaudeOAuthTokens" 
WHERE user_id = 'your_user_id';""",
    'SELECT * FROM "LiteLLM_ClaudeOAuthTokens";',
    'SELECT user_id, expires_at, refresh_count FROM "LiteLLM_ClaudeOAuthTokens";',
    """SELECT user_id, expires_at, CASE WHEN expires_at > NOW() THEN 'valid' ELSE 'expired' END as status FROM "LiteLLM_ClaudeOAuthTokens";""",
]
SEED_RESETS = [
    """DELETE FROM "LiteLLM_ClaudeOAuthTokens" WHERE user_id = 'user_123';""",
    """UPDATE "LiteLLM_UserTable" 
SET claude_oauth_enabled = FALSE, 
    claude_oauth_connected_at = NULL;""",
    'TRUNCATE TABLE "LiteLLM_ClaudeOAuthTokens";',
]


def record(user_id: str = "alice", **changes) -> TokenRecord:
    base = TokenRecord(user_id=user_id, access_token=f"{ACCESS}-{user_id}", refresh_token=f"{REFRESH}-{user_id}",
                       expires_at=time.time() + 3600, scopes=["user:inference", "user:profile"],
                       account_email=f"{user_id}@example.com")
    return base.evolve(**changes)


# -- the schema as the seed's SQL sees it -----------------------------------------------

async def test_uses_an_existing_litellm_user_table(pg_dsn, key, connect):
    conn = await connect(pg_dsn)
    try:  # a LiteLLM-shaped user table, created before us
        await conn.execute('''CREATE TABLE "LiteLLM_UserTable" (
            user_id TEXT PRIMARY KEY, user_alias TEXT, user_email TEXT, spend DOUBLE PRECISION NOT NULL DEFAULT 0,
            models TEXT[], teams TEXT[] DEFAULT ARRAY[]::TEXT[], metadata JSONB DEFAULT '{}')''')
        await conn.execute('''INSERT INTO "LiteLLM_UserTable" (user_id, user_alias, user_email, spend)
                              VALUES ('bob', 'Bobby', 'bob@corp.example', 12.5)''')
        tier = PostgresTier(pg_dsn, Keyring.from_spec(key))
        try:
            await tier.put(record("bob"), 0)
            await tier.put(record("carol"), 0)  # no user row yet: a minimal one is made
        finally:
            await tier.close()
        bob = await conn.fetchrow('SELECT * FROM "LiteLLM_UserTable" WHERE user_id = $1', "bob")
        assert bob["user_alias"] == "Bobby" and bob["spend"] == 12.5
        assert bob["user_email"] == "bob@corp.example"  # theirs is kept
        assert bob["claude_oauth_enabled"] is True and bob["claude_oauth_connected_at"] is not None
        carol = await conn.fetchrow('SELECT * FROM "LiteLLM_UserTable" WHERE user_id = $1', "carol")
        assert carol["user_email"] == "carol@example.com" and carol["claude_oauth_enabled"] is True
    finally:
        await conn.close()


async def test_seed_sql_runs_unchanged(pg_dsn, tier, connect):
    await tier.put(record("alice"), 0)
    await tier.put(record("bob", expires_at=time.time() - 60), 0)
    await tier.put(record("dave", refresh_token=None, expires_at=time.time() - 60), 0)
    conn = await connect(pg_dsn)
    try:
        for sql in (SEED_STATUS_UNQUOTED, SEED_STATUS_QUOTED):
            rows = {r["user_id"]: r for r in await conn.fetch(sql)}
            assert {u: r["status"] for u, r in rows.items()} == {
                "alice": "active", "bob": "expired_refreshable", "dave": "expired"}
            assert rows["alice"]["user_email"] == "alice@example.com"
        for sql in SEED_READS:
            await conn.fetch(sql)
        assert len(await conn.fetch(SEED_READS[0])) == 3
        await conn.execute("""INSERT INTO "LiteLLM_UserTable" (user_id) VALUES ('user_123')""")
        for sql in SEED_RESETS:
            await conn.execute(sql)
        assert await conn.fetchval(f"SELECT count(*) FROM {TOKENS}") == 0
    finally:
        await conn.close()


# -- records, encryption ---------------------------------------------------------------------

async def test_round_trip_encrypted_at_rest(pg_dsn, tier, key, connect):
    stored = await tier.put(record("alice", last_refresh_error="boom", refresh_failures=2), 0)
    assert stored.version == 1 and stored.source == "postgres" and stored.created_at > 0
    got = await tier.get("alice")
    assert got.access_token == f"{ACCESS}-alice" and got.refresh_token == f"{REFRESH}-alice"
    assert got.scopes == ["user:inference", "user:profile"] and got.account_email == "alice@example.com"
    assert (got.last_refresh_error, got.refresh_failures, got.version) == ("boom", 2, 1)
    assert abs(got.expires_at - stored.expires_at) < 1e-3
    assert await tier.get("nobody") is None
    conn = await connect(pg_dsn)
    try:
        raw = dict(await conn.fetchrow(f"SELECT * FROM {TOKENS} WHERE user_id = 'alice'"))
        text = repr(raw)
        assert ACCESS not in text and REFRESH not in text
        kid = Keyring.from_spec(key).primary_id
        assert raw["access_token_encrypted"].startswith(f"enc:v1:{kid}:")
        # a ciphertext moved onto another user's row does not decrypt (user id is bound in)
        await tier.put(record("mallory"), 0)
        await conn.execute(f"UPDATE {TOKENS} SET access_token_encrypted = $1 WHERE user_id = 'mallory'",
                           raw["access_token_encrypted"])
    finally:
        await conn.close()
    with pytest.raises(CryptoError, match="mallory"):
        await tier.get("mallory")


async def test_listing_decrypts_nothing(pg_dsn, tier):
    await tier.put(record("alice"), 0)
    await tier.put(record("bob", refresh_token=None), 0)
    blind = PostgresTier(pg_dsn, Keyring.from_spec(generate_key()))  # cannot decrypt a thing
    try:
        rows = {r.user_id: r for r in await blind.list()}
        with pytest.raises(UnknownKey):
            await blind.list(secrets=True)
    finally:
        await blind.close()
    assert rows["alice"].access_token == HIDDEN and rows["alice"].refresh_token == HIDDEN
    assert rows["bob"].refresh_token is None and rows["bob"].account_email == "bob@example.com"
    full = {r.user_id: r for r in await tier.list(secrets=True)}
    assert full["alice"].access_token == f"{ACCESS}-alice"


async def test_a_listed_row_is_the_stored_record_with_tokens_hidden(tier):
    await tier.put(record("alice", last_refresh_error="boom", refresh_failures=2), 0)
    stored = await tier.get("alice")
    [listed] = await tier.list()
    assert isinstance(listed, TokenRecord) and listed.source == "postgres"
    for name in TokenRecord.__dataclass_fields__:  # every field, read from the row in place
        if name not in ("access_token", "refresh_token"):
            assert getattr(listed, name) == getattr(stored, name), name
    assert listed == stored.evolve(access_token=HIDDEN, refresh_token=HIDDEN)
    assert listed != stored and listed.to_dict()["last_refresh_error"] == "boom"
    # evolve gives a plain record that can be written back with compare-and-swap
    moved = listed.evolve(access_token=f"{ACCESS}-new", refresh_token=f"{REFRESH}-new")
    assert type(moved) is TokenRecord and moved.version == stored.version
    saved = await tier.put(moved, stored.version)
    assert saved.version == stored.version + 1
    assert (await tier.get("alice")).access_token == f"{ACCESS}-new"
    with pytest.raises(StaleWrite):  # the listing is now stale: it cannot land
        await tier.put(listed.evolve(access_token=f"{ACCESS}-old"), listed.version)


async def test_unknown_key_is_named_and_nothing_is_overwritten(pg_dsn, tier, connect):
    await tier.put(record("alice"), 0)
    old_kid = tier.keyring.primary_id
    conn = await connect(pg_dsn)
    before = await conn.fetchrow(f"SELECT access_token_encrypted, refresh_token_encrypted, version "
                                 f"FROM {TOKENS} WHERE user_id = 'alice'")
    other = PostgresTier(pg_dsn, Keyring.from_spec(generate_key()))
    try:
        with pytest.raises(UnknownKey) as caught:
            await other.get("alice")
        assert old_kid in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(StaleWrite):  # a stale CAS write cannot land either
            await other.put(record("alice", access_token="sk-ant-oat01-other"), 7)
    finally:
        await other.close()
    after = await conn.fetchrow(f"SELECT access_token_encrypted, refresh_token_encrypted, version "
                                f"FROM {TOKENS} WHERE user_id = 'alice'")
    await conn.close()
    assert tuple(after) == tuple(before)


async def test_no_key_refuses_to_store_plaintext(pg_dsn):
    bare = PostgresTier(pg_dsn, Keyring([]))
    try:
        with pytest.raises(CryptoError, match="CLAUDE_TOKEN_ENCRYPTION_KEY"):
            await bare.put(record("alice"), 0)
        assert await bare.get("alice") is None
    finally:
        await bare.close()


# -- compare-and-swap ------------------------------------------------------------------------

async def test_stale_write_is_refused_and_newest_kept(pg_dsn, tier, key):
    first = await tier.put(record("alice"), 0)
    with pytest.raises(StaleWrite, match="already has stored tokens"):
        await tier.put(record("alice", access_token="sk-ant-oat01-second-login"), 0)
    replica = PostgresTier(pg_dsn, Keyring.from_spec(key))  # another process's view
    try:
        seen = await replica.get("alice")
        newer = await tier.put(first.evolve(access_token="sk-ant-oat01-newest", refresh_count=1), first.version)
        assert newer.version == first.version + 1
        with pytest.raises(StaleWrite, match=f"stored version {newer.version}, expected {seen.version}"):
            await replica.put(seen.evolve(access_token="sk-ant-oat01-late-writer"), seen.version)
    finally:
        await replica.close()
    now = await tier.get("alice")
    assert now.access_token == "sk-ant-oat01-newest" and now.version == newer.version
    # an unconditional write (a new login) replaces and bumps the version
    login = await tier.put(record("alice", access_token="sk-ant-oat01-relogin"))
    assert login.version == newer.version + 1
    assert await tier.delete("alice") is True and await tier.delete("alice") is False
    with pytest.raises(StaleWrite, match="deleted"):
        await tier.put(now, now.version)


async def test_touch_records_use_without_a_new_version(tier):
    stored = await tier.put(record("alice"), 0)
    when = time.time()
    await tier.touch("alice", when)
    await tier.touch("alice", when - 100)  # never moves backwards
    got = await tier.get("alice")
    assert got.version == stored.version and abs(got.last_used - when) < 1e-3


# -- the lock --------------------------------------------------------------------------------

async def test_locked_reads_and_writes_in_the_lock_transaction(pg_dsn, tier, connect):
    await tier.put(record("alice"), 0)
    conn = await connect(pg_dsn)
    try:
        async with tier.locked("alice"):
            held = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                       "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            current = await tier.get("alice")
            await tier.put(current.evolve(access_token="sk-ant-oat01-inside"), current.version)
            assert (await tier.get("alice")).access_token == "sk-ant-oat01-inside"  # same transaction
            outside = await conn.fetchval(f"SELECT version FROM {TOKENS} WHERE user_id = 'alice'")
            assert outside == current.version  # not committed yet: invisible to others
        assert held == 1
        assert await conn.fetchval(f"SELECT version FROM {TOKENS} WHERE user_id = 'alice'") == current.version + 1
    finally:
        await conn.close()


async def test_lock_excludes_other_holders_and_commits_on_error(pg_dsn, tier, key):
    await tier.put(record("alice"), 0)
    other = PostgresTier(pg_dsn, Keyring.from_spec(key))  # its own pool: a different connection
    order = []

    async def first():
        async with tier.locked("alice"):
            order.append("first in")
            await asyncio.sleep(0.3)
            current = await tier.get("alice")
            await tier.put(current.evolve(last_refresh_error="noted"), current.version)
            order.append("first out")
            raise RuntimeError("the refresh failed after noting it")

    async def second():
        await asyncio.sleep(0.05)
        async with other.locked("alice"):
            order.append("second in")
            return await other.get("alice")

    try:
        results = await asyncio.gather(first(), second(), return_exceptions=True)
        async with other.locked("bob"):  # other users are not blocked
            pass
    finally:
        await other.close()
    assert order == ["first in", "first out", "second in"]
    assert isinstance(results[0], RuntimeError)
    assert results[1].last_refresh_error == "noted"  # the note written before the error was kept
    assert lock_key("alice") != lock_key("bob")


# -- pending logins and audit ----------------------------------------------------------------

async def test_pending_logins_are_taken_once_and_encrypted(pg_dsn, tier, connect):
    now = time.time()
    verifier = "v" * 64
    await tier.save_pending(PendingLogin("s1", verifier, "alice", "https://cb", now - 5, now + 600))
    await tier.save_pending(PendingLogin("s2", verifier + "x", "alice", "https://cb", now, now + 600))
    await tier.save_pending(PendingLogin("old", verifier, "bob", "https://cb", now - 900, now - 300))
    conn = await connect(pg_dsn)
    raw = await conn.fetchval("""SELECT verifier_encrypted FROM "LiteLLM_ClaudeOAuthPendingLogins" WHERE state = 's1'""")
    await conn.close()
    assert raw.startswith("enc:v1:") and verifier not in raw
    assert (await tier.newest_pending("alice")).state == "s2"
    assert await tier.newest_pending("bob") is None  # expired ones are not offered
    taken = await asyncio.gather(*[tier.take_pending("s1") for _ in range(5)])
    winners = [t for t in taken if t is not None]
    assert len(winners) == 1 and winners[0].verifier == verifier and winners[0].user_id == "alice"
    assert await tier.sweep_pending() == 1
    assert await tier.take_pending("old") is None


async def test_audit_trail(tier):
    await tier.append_audit(AuditEvent("login", "alice", True, "account a@x", "cli:me@host"))
    await tier.append_audit(AuditEvent("refresh_failed", "alice", False, "HTTP 500", "api:me@host"))
    await tier.append_audit(AuditEvent("logout", "bob", True, "", "cli:me@host"))
    trail = await tier.audit_trail("alice")
    assert [(e.action, e.ok, e.detail) for e in trail] == [("refresh_failed", False, "HTTP 500"),
                                                           ("login", True, "account a@x")]
    assert len(await tier.audit_trail(limit=2)) == 2


# -- the server being unreachable ------------------------------------------------------------

async def test_unreachable_server_is_one_clear_line_without_the_password(tmp_path, key):
    dead = PostgresTier("postgresql://console:s3cret-pw@127.0.0.1:1/tokens", Keyring.from_spec(key))
    try:
        with pytest.raises(TierUnavailable) as caught:
            await dead.get("alice")
        text = str(caught.value)
        assert "127.0.0.1:1/tokens" in text and "connection refused" in text
        assert "s3cret" not in text and "\n" not in text
        health = await dead.health()
        assert health.state == "down" and "s3cret" not in health.detail
        # writes fail loudly, and land in the file only when that was explicitly allowed
        strict = Hierarchy([dead, FileTier(tmp_path / "t.json", Keyring.from_spec(key))])
        with pytest.raises(TierUnavailable, match="nothing was stored"):
            await strict.put(record("alice"))
        assert not (tmp_path / "t.json").exists()
        # a read the database cannot answer is "unreachable", never "not logged in"
        with pytest.raises(TierUnavailable):
            await strict.get("alice")
        lenient = Hierarchy([dead, FileTier(tmp_path / "t.json", Keyring.from_spec(key))],
                            allow_file_fallback=True)
        await lenient.put(record("alice"))
        assert (await lenient.get("alice")).source == "file"  # reads fall back to the file
    finally:
        await dead.close()


async def test_missing_database_is_named(pg_dsn, key):
    dead = PostgresTier(pg_dsn + "_missing", Keyring.from_spec(key))
    try:
        with pytest.raises(TierUnavailable, match="database does not exist"):
            await dead.get("alice")
    finally:
        await dead.close()


async def test_health_counts_rows_under_older_keys(pg_dsn, key):
    old = PostgresTier(pg_dsn, Keyring.from_spec(key))
    await old.put(record("alice"), 0)
    await old.close()
    rotated = PostgresTier(pg_dsn, Keyring.from_spec(f"{generate_key()},{key}"))
    try:
        health = await rotated.health()
        assert health.state == "up" and "(1 user," in health.detail and "; 1 row under other keys" in health.detail
    finally:
        await rotated.close()


def test_rows_fill_every_record_field():
    # records are built without __init__ (100 000 at a time): every field must come from the row
    assert set(FIELDS) | {"source"} == {f.name for f in dataclasses.fields(TokenRecord)}


def test_pgbouncer_flag_turns_off_the_statement_cache():
    dsn, options = connect_options("postgresql://u:p@h:6432/db?pgbouncer=true&sslmode=disable")
    assert dsn == "postgresql://u:p@h:6432/db?sslmode=disable" and options == {"statement_cache_size": 0}
    assert connect_options("postgresql://h/db") == ("postgresql://h/db", {})


def test_importing_the_tier_does_not_import_asyncpg():
    code = ("import sys; import console.store.postgres, console.refresher, console.claude_oauth_db; "
            "print('asyncpg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- the seed's handler ----------------------------------------------------------------------

async def test_seed_database_handler(pg_dsn, key):
    import asyncpg

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    db = ClaudeOAuthDatabase(pool, key)
    try:
        expires = int(time.time()) + 300
        assert await db.store_tokens("user_123", ACCESS, REFRESH, expires, ["org:create_api_key"], "admin")
        tokens = await db.get_tokens("user_123")
        assert tokens == {"accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": expires,
                          "scopes": ["org:create_api_key"], "refreshCount": 0}
        assert await db.get_expiring_tokens(minutes=10) == ["user_123"]
        assert await db.get_expiring_tokens(minutes=1) == []
        assert await db.update_token_expiry("user_123", "sk-ant-oat01-new", expires + 3600)
        assert not await db.update_token_expiry("user_123", "sk-ant-oat01-late", expires, expected_version=1)
        again = await db.get_tokens("user_123")
        assert again["accessToken"] == "sk-ant-oat01-new" and again["refreshToken"] == REFRESH
        assert again["refreshCount"] == 1
        listed = await db.list_tokens()
        assert [r["user_id"] for r in listed] == ["user_123"] and "accessToken" not in listed[0]
        assert ACCESS not in repr(listed)
        row = await pool.fetchrow(f"SELECT created_by, updated_by, last_used FROM {TOKENS}")
        assert row["created_by"] == "admin" and row["last_used"] is not None
        assert await db.delete_tokens("user_123")
        assert await db.get_tokens("user_123") is None
        assert await pool.fetchval("""SELECT claude_oauth_enabled FROM "LiteLLM_UserTable"
                                      WHERE user_id = 'user_123'""") is False
    finally:
        await db.close()
        await pool.close()



def test_cli_migrate(pg_dsn, console_env):
    env = {**os.environ, **console_env, "DATABASE_URL": pg_dsn, "CLAUDE_CONSOLE_AUTO_MIGRATE": "0"}
    first = subprocess.run([sys.executable, "-m", "console", "migrate"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied {len(migrations())} migrations: " + ", ".join(m.id for m in migrations())
    again = subprocess.run([sys.executable, "-m", "console", "migrate"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == "the database schema is up to date"
    env.pop("DATABASE_URL")
    none = subprocess.run([sys.executable, "-m", "console", "migrate"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert none.returncode == 2 and "set DATABASE_URL" in none.stderr


async def test_lent_connections_reach_borrowers_waiting_on_a_small_pool(pg_dsn, key):
    """Connections given back are kept for the next borrower without a round of the event loop,
    but never while another borrower waits in the pool: 40 locked writes and reads on a pool of
    2 all finish, and the lock's row lock taken by its read is held until the commit."""
    tier = PostgresTier(pg_dsn, Keyring.from_spec(key), pool_size=2)
    try:
        for n in range(8):
            await tier.put(TokenRecord(user_id=f"p{n}", access_token=ACCESS, refresh_token=REFRESH,
                                       expires_at=time.time() + 3600), 0)

        async def change(uid: str) -> None:
            async with tier.locked(uid):
                current = await tier.get(uid)
                await tier.lock_row(uid)  # taken by the read already: no round trip
                await tier.put(current.evolve(refresh_count=current.refresh_count + 1), current.version)

        async def read(uid: str) -> None:
            assert (await tier.get(uid)).access_token == ACCESS

        jobs = [change(f"p{n % 8}") if n % 2 else read(f"p{n % 8}") for n in range(40)]
        await asyncio.wait_for(asyncio.gather(*jobs), 60)
        counts = [(await tier.get(f"p{n}")).refresh_count for n in range(8)]
        assert sum(counts) == 20
        shared = tier._shared
        assert shared.waiting == 0 and 1 <= len(shared.idle) <= 2
    finally:
        await tier.close()
    assert shared.idle == [] and shared.pool._closed


async def test_a_read_under_the_lock_takes_the_row_lock_only_when_it_is_free(tier, pg_dsn, connect):
    """Inside ``locked``, the read locks the row (SKIP LOCKED: it never waits); a row another
    session holds is still read, and ``lock_row`` then waits for it (up to row_lock_timeout)."""
    await tier.put(TokenRecord(user_id="ann", access_token=ACCESS, refresh_token=REFRESH,
                               expires_at=time.time() + 3600), 0)
    admin = await connect(pg_dsn)
    try:
        async with tier.locked("ann"):
            assert (await tier.get("ann")).access_token == ACCESS
            with pytest.raises(Exception, match="lock"):  # our read holds the row lock now
                await admin.execute(f"SET lock_timeout = 200; UPDATE {TOKENS} SET refresh_count = 9 "
                                    "WHERE user_id = 'ann'")
        tx = admin.transaction()
        await tx.start()
        await admin.execute("SET LOCAL lock_timeout = 0")
        await admin.fetchval(f"SELECT 1 FROM {TOKENS} WHERE user_id = 'ann' FOR UPDATE")
        tier.row_lock_timeout = 0.2
        async with tier.locked("ann"):
            assert (await tier.get("ann")).access_token == ACCESS  # read, not locked: someone has it
            with pytest.raises(Exception, match="locked by another session"):
                await tier.lock_row("ann")
        await tx.rollback()
    finally:
        await admin.close()


async def test_a_refresh_cancelled_while_waiting_for_the_lock_gives_its_connection_back(pg_dsn, key):
    """Cancelled inside ``locked`` while another holder has the user: the connection goes back
    to the pool (its lock wait cancelled), so two holders at once still fit in a pool of 2."""
    tier = PostgresTier(pg_dsn, Keyring.from_spec(key), pool_size=2)
    try:
        inside = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with tier.locked("u"):
                inside.set()
                await release.wait()

        holder = asyncio.ensure_future(hold())
        await asyncio.wait_for(inside.wait(), 10)

        async def wait_for_u() -> None:
            async with tier.locked("u"):
                raise AssertionError("got the lock while another holder had it")

        waiter = asyncio.ensure_future(wait_for_u())
        await asyncio.sleep(0.3)  # in the server, waiting for the advisory lock
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await holder
        both = asyncio.Barrier(2)

        async def together(uid: str) -> None:
            async with tier.locked(uid):
                await both.wait()

        await asyncio.wait_for(asyncio.gather(together("v"), together("w")), 15)
    finally:
        await tier.close()


async def test_a_lock_lost_with_its_connection_lets_nothing_be_spent(tier, pg_dsn, connect):
    """The lock's connection dies after the refresh began: the read is retried on another
    connection (it must still answer), but the user's lock went with the dead session, so
    ``lock_row`` (the last step before a refresh spends the token) must refuse."""
    await tier.put(TokenRecord(user_id="lou", access_token=ACCESS, refresh_token=REFRESH,
                               expires_at=time.time() + 3600), 0)
    admin = await connect(pg_dsn)
    try:
        async with tier.locked("lou"):
            pid = await tier._held("lou").conn.fetchval("SELECT pg_backend_pid()")
            await admin.execute("SELECT pg_terminate_backend($1)", pid)   # only our own session
            assert (await tier.get("lou")).access_token == ACCESS           # answered elsewhere
            with pytest.raises(TierUnavailable, match="lock on 'lou' was lost"):
                await tier.lock_row("lou")
    finally:
        await admin.close()
