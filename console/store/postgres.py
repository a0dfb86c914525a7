"""The PostgreSQL tier: the shared, encrypted store every replica reads and writes.

Tokens are encrypted in this process before they reach the database (the keyring, user id as
associated data, key id inside each value). Single flight across replicas rests on two things
here: ``locked(user)`` is a transaction holding ``pg_advisory_xact_lock`` on the user
(transaction-scoped, so safe behind PgBouncer's transaction pooling), and every ``put`` with an
expected version is a compare-and-swap on the ``version`` column. Inside ``locked`` the reads
and writes for that user run on the lock's own connection, so the service's re-read and its
write happen in the lock's transaction.

asyncpg is imported when the first pool is made, never at import time. One pool per process
and event loop is shared by every tier with the same DSN.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..crypto import Keyring, is_encrypted
from ..errors import StaleWrite, StorageError, TierUnavailable
from ..tokens import HIDDEN, TokenRecord
from .base import DOWN, UP, AuditEvent, PendingLogin, Tier, TierHealth

log = logging.getLogger("console.store.postgres")

TOKENS = '"LiteLLM_ClaudeOAuthTokens"'
USERS = '"LiteLLM_UserTable"'
AUDIT = '"LiteLLM_ClaudeOAuthAudit"'
PENDING = '"LiteLLM_ClaudeOAuthPendingLogins"'
MIGRATIONS = '"LiteLLM_ClaudeOAuthMigrations"'

# TokenRecord fields in the order of the SELECT lists below (source is added in Python).
_FIELDS = ("user_id", "access_token", "refresh_token", "expires_at", "scopes", "account_email",
           "account_uuid", "organization_uuid", "organization_name", "subscription_type",
           "created_at", "updated_at", "last_used", "refresh_count", "last_refresh_at",
           "last_refresh_error_at", "last_refresh_error", "refresh_failures", "needs_login", "version")


class ListedRecord(TokenRecord):
    """A listed user read in place from its asyncpg row.

    The board lists 100 000 users; copying each row into a record's own dict cost more than
    the query itself. Fields are properties over the row; ``evolve`` and equality work on a
    plain ``TokenRecord``, so callers cannot tell the difference.
    """

    __slots__ = ("_row", "source")

    def plain(self) -> TokenRecord:
        return TokenRecord(**{name: getattr(self, name) for name in TokenRecord.__dataclass_fields__})

    def evolve(self, **changes: Any) -> TokenRecord:
        return self.plain().evolve(**changes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListedRecord):
            other = other.plain()
        return self.plain() == other if isinstance(other, TokenRecord) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _column(index: int) -> property:
    return property(lambda record: record._row[index])


for _index, _name in enumerate(_FIELDS):
    setattr(ListedRecord, _name, _column(_index))


_TAIL = """date_part('epoch', expires_at), COALESCE(scopes, '{}'), account_email, account_uuid,
    organization_uuid, organization_name, subscription_type,
    COALESCE(date_part('epoch', created_at), 0), COALESCE(date_part('epoch', updated_at), 0),
    date_part('epoch', last_used), COALESCE(refresh_count, 0), date_part('epoch', last_refresh_at),
    date_part('epoch', last_refresh_error_at), last_refresh_error, refresh_failures, needs_login, version"""
SELECT_ONE = f"""SELECT user_id, access_token_encrypted, refresh_token_encrypted, {_TAIL}
    FROM {TOKENS} WHERE user_id = $1"""
SELECT_ALL_SECRETS = f"SELECT user_id, access_token_encrypted, refresh_token_encrypted, {_TAIL} FROM {TOKENS}"
# The board's listing: one query, nothing to decrypt, no ciphertext on the wire.
SELECT_ALL_HIDDEN = f"""SELECT user_id, '{HIDDEN}',
    CASE WHEN refresh_token_encrypted IS NULL THEN NULL ELSE '{HIDDEN}' END, {_TAIL} FROM {TOKENS}"""
_FIRST_PAGE = " ORDER BY user_id LIMIT $1"                  # keyset pages ride the primary key
_NEXT_PAGE = " WHERE user_id > $1 ORDER BY user_id LIMIT $2"

_RETURNING = """RETURNING version, COALESCE(date_part('epoch', created_at), 0),
    COALESCE(date_part('epoch', updated_at), 0), date_part('epoch', last_used)"""
# $1 user, $2 expected version, $3.. the columns below, in order.
_SET_COLUMNS = ("access_token_encrypted", "refresh_token_encrypted", "expires_at", "scopes", "account_email",
                "account_uuid", "organization_uuid", "organization_name", "subscription_type",
                "refresh_count", "last_refresh_at", "last_refresh_error_at", "last_refresh_error",
                "refresh_failures", "needs_login")
_TIMES = {"expires_at", "last_refresh_at", "last_refresh_error_at"}


def _placeholder(column: str, n: int) -> str:
    return f"to_timestamp(${n}::float8)" if column in _TIMES else f"${n}"


# Both single and bulk writes mark the user as connected in LiteLLM's user table, once.
_USER_ON_CONFLICT = """ON CONFLICT (user_id) DO UPDATE SET claude_oauth_enabled = TRUE,
        claude_oauth_connected_at = COALESCE(u.claude_oauth_connected_at, now()),
        user_email = COALESCE(u.user_email, EXCLUDED.user_email)
    WHERE u.claude_oauth_enabled IS NOT TRUE OR u.claude_oauth_connected_at IS NULL
        OR (u.user_email IS NULL AND EXCLUDED.user_email IS NOT NULL)"""

_SETS = ", ".join(f"{c} = {_placeholder(c, i + 3)}" for i, c in enumerate(_SET_COLUMNS))
_N = len(_SET_COLUMNS) + 2
UPDATE_CAS = f"""UPDATE {TOKENS} SET {_SETS},
    last_used = GREATEST(last_used, to_timestamp(${_N + 1}::float8)), updated_at = now(),
    updated_by = ${_N + 2}, version = version + 1
    WHERE user_id = $1 AND version = $2 {_RETURNING}"""
_INSERT_VALUES = ", ".join(_placeholder(c, i + 3) for i, c in enumerate(_SET_COLUMNS))
# The seed's foreign key needs a user row; make one when missing and mark OAuth as connected,
# the way the seed's handler does. $2 is unused by inserts (kept so both share parameters).
_UPSERT_HEAD = f"""WITH u AS (
    INSERT INTO {USERS} AS u (user_id, user_email, claude_oauth_enabled, claude_oauth_connected_at)
    VALUES ($1, $7, TRUE, now())
    {_USER_ON_CONFLICT}
)
INSERT INTO {TOKENS} AS t (user_id, {", ".join(_SET_COLUMNS)}, last_used, created_at, created_by,
    updated_by, version)
VALUES ($1, {_INSERT_VALUES}, to_timestamp(${_N + 1}::float8),
    COALESCE(to_timestamp(NULLIF($2::float8, 0)), now()), ${_N + 2}, ${_N + 2}, 1)"""
INSERT_NEW = f"{_UPSERT_HEAD} ON CONFLICT (user_id) DO NOTHING {_RETURNING}"
UPSERT = f"""{_UPSERT_HEAD} ON CONFLICT (user_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _SET_COLUMNS)},
    last_used = GREATEST(t.last_used, EXCLUDED.last_used), updated_at = now(),
    updated_by = EXCLUDED.updated_by, version = t.version + 1 {_RETURNING}"""
DELETE = f"""WITH d AS (DELETE FROM {TOKENS} WHERE user_id = $1 RETURNING user_id),
    u AS (UPDATE {USERS} SET claude_oauth_enabled = FALSE, claude_oauth_connected_at = NULL
          WHERE user_id IN (SELECT user_id FROM d))
    SELECT count(*) FROM d"""
TOUCH = f"""UPDATE {TOKENS} SET last_used = to_timestamp($2::float8)
    WHERE user_id = $1 AND (last_used IS NULL OR last_used < to_timestamp($2::float8))"""
# Rows due for a background refresh, claimed with a lease so other replicas skip them.
# $1 window s, $2 keepalive s, $3 backoff base s, $4 backoff cap s, $5 limit, $6 lease s, $7 owner.
CLAIM_DUE = f"""WITH due AS (
    SELECT user_id FROM {TOKENS}
    WHERE refresh_token_encrypted IS NOT NULL AND NOT needs_login
      AND (refresh_claimed_until IS NULL OR refresh_claimed_until < now())
      AND (expires_at <= now() + make_interval(secs => $1::float8)
           OR COALESCE(last_refresh_at, created_at) <= now() - make_interval(secs => $2::float8))
      AND (refresh_failures = 0 OR last_refresh_error_at IS NULL
           OR last_refresh_error_at + make_interval(secs => LEAST($4::float8,
                  $3::float8 * power(2::float8, LEAST(refresh_failures - 1, 30)))) <= now())
    ORDER BY expires_at
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE {TOKENS} t SET refresh_claimed_until = now() + make_interval(secs => $6::float8),
    refresh_claimed_by = $7
FROM due WHERE t.user_id = due.user_id
RETURNING t.user_id, t.version"""


# -- errors -------------------------------------------------------------------------------

def _errors():
    import asyncpg

    return asyncpg, asyncpg.exceptions


def is_connection_error(exc: BaseException) -> bool:
    """The server is down, restarting, refusing us, or the connection died under us."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, socket.gaierror)):
        return True
    asyncpg, x = _errors()
    if isinstance(exc, (x.PostgresConnectionError, x.OperatorInterventionError,
                        x.InsufficientResourcesError, x.InvalidCatalogNameError,
                        x.InvalidAuthorizationSpecificationError)):
        return True
    if isinstance(exc, x.InternalClientError):  # the protocol broke mid-shutdown: this connection is done
        return "another operation" in str(exc)
    return isinstance(exc, asyncpg.InterfaceError) and any(
        word in str(exc) for word in ("closed", "closing", "released", "terminated"))


def _is_permanent(exc: BaseException) -> bool:
    """Errors a retry cannot fix (wrong database name, wrong password, no such host)."""
    _, x = _errors()
    return isinstance(exc, (x.InvalidCatalogNameError, x.InvalidAuthorizationSpecificationError,
                            socket.gaierror))


def _is_lost(exc: BaseException) -> bool:
    """The connection died under us: a new one may well work at once."""
    asyncpg, x = _errors()
    if isinstance(exc, (x.PostgresConnectionError, x.AdminShutdownError, x.CrashShutdownError,
                        ConnectionResetError, BrokenPipeError)):
        return True
    text = str(exc)
    return (isinstance(exc, asyncpg.InterfaceError) and ("closed" in text or "released" in text)) or (
        isinstance(exc, x.InternalClientError) and "another operation" in text)


def describe_dsn(dsn: str) -> str:
    """``host:port/database``, never the password."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    db = parts.path.lstrip("/") or (parts.username or "postgres")
    return f"{host}:{port}/{db}"


def _reason(exc: BaseException) -> tuple[str, str]:
    _, x = _errors()
    if isinstance(exc, x.InvalidCatalogNameError):
        return "the database does not exist", "create it (createdb NAME) or fix DATABASE_URL"
    if isinstance(exc, x.InvalidAuthorizationSpecificationError):
        return "authentication failed", "check the user and password in DATABASE_URL"
    if isinstance(exc, x.TooManyConnectionsError):
        return "too many connections", "lower CLAUDE_CONSOLE_DB_POOL_SIZE or raise max_connections"
    if isinstance(exc, x.CannotConnectNowError):
        return "the server is starting up or shutting down", "retry in a moment"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve", "fix the host in DATABASE_URL"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", "start PostgreSQL or fix DATABASE_URL"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out", "check the network and DATABASE_URL"
    if _is_lost(exc):
        return "the connection was lost (server restarted?)", "retry; the pool reconnects by itself"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first, "check that PostgreSQL is running and DATABASE_URL is right"


# -- one pool per process (and event loop) ------------------------------------------------

@dataclass
class _SharedPool:
    pool: Any
    users: int = 0
    migrated: bool = False


_POOLS: dict[tuple, _SharedPool] = {}
_POOL_LOCKS: dict[tuple, asyncio.Lock] = {}


def _connect_options(dsn: str) -> tuple[str, dict[str, Any]]:
    """Strip our own ``pgbouncer=true`` DSN flag: behind PgBouncer, no server-side statement cache."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = {k: v for k, v in query if k == "pgbouncer"}
    rest = [(k, v) for k, v in query if k != "pgbouncer"]
    options: dict[str, Any] = {}
    if flags.get("pgbouncer", "").lower() in ("1", "true", "yes", "on"):
        options["statement_cache_size"] = 0
    return urlunsplit(parts._replace(query=urlencode(rest))), options


# -- the lock's connection, visible to the coroutine that holds the lock -----------------

@dataclass
class _Held:
    tier: "PostgresTier"
    user_id: str
    conn: Any
    alive: bool = True
    writes: list = field(default_factory=list)   # replayed if the commit is lost


_HELD: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("console_pg_lock", default=None)


_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("console_pg_actor", default=None)


@contextlib.contextmanager
def writing_as(actor: str | None):
    """Record writes made inside as done by ``actor`` (the seed's created_by / updated_by)."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def lock_key(user_id: str) -> int:
    """The user's 64-bit advisory lock key (namespaced so other applications' keys differ)."""
    digest = hashlib.blake2b(f"claude-console:user:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MIGRATION_LOCK = lock_key("\x00migrations")


# -- migrations ----------------------------------------------------------------------------

@dataclass
class Migration:
    id: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The SQL files shipped in ``console/migrations``, in order."""
    folder = resources.files("console") / "migrations"
    found = [Migration(entry.name[:-4], entry.read_text(encoding="utf-8"))
             for entry in folder.iterdir() if entry.name.endswith(".sql")]
    return sorted(found, key=lambda m: m.id)


async def apply_migrations(conn) -> list[str]:
    """Apply what is missing, in one transaction under an advisory lock; return what ran."""
    wanted = migrations()
    try:
        done = {r[0] for r in await conn.fetch(f"SELECT id FROM {MIGRATIONS}")}
        if all(m.id in done for m in wanted):
            return []
    except Exception as exc:
        _, x = _errors()
        if not isinstance(exc, x.UndefinedTableError):
            raise
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS} (
            id TEXT PRIMARY KEY, checksum TEXT NOT NULL,
            applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP)""")
        done = {r[0]: r[1] for r in await conn.fetch(f"SELECT id, checksum FROM {MIGRATIONS}")}
        for m in wanted:
            if m.id in done:
                if done[m.id] != m.checksum:
                    log.warning("migration %s was applied from a different file (checksum differs)", m.id)
                continue
            try:
                await conn.execute(m.sql)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StorageError(f"database migration {m.id} failed: {first}; nothing was changed",
                                   hint="run claude-console migrate as the owner of the tables") from None
            await conn.execute(f"INSERT INTO {MIGRATIONS} (id, checksum) VALUES ($1, $2)", m.id, m.checksum)
            applied.append(m.id)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


# -- the tier ------------------------------------------------------------------------------

class PostgresTier(Tier):
    name = "postgres"
    writable = True

    def __init__(self, dsn: str, keyring: Keyring | None = None, *, pool_size: int = 10,
                 auto_migrate: bool = True, write_patience: float = 30.0, actor: str | None = None,
                 pool: Any = None) -> None:
        self.dsn = dsn
        self.where = f"PostgreSQL at {describe_dsn(dsn)}" if dsn else "PostgreSQL"
        self.keyring = keyring or Keyring([])
        self.pool_size = max(2, int(pool_size))
        self.auto_migrate = auto_migrate
        self.write_patience = write_patience
        self.actor = actor or f"claude-console@{socket.gethostname()}"
        self._given_pool = pool          # an asyncpg pool the caller owns (seed handler)
        self._given_migrated = False
        self._shared: _SharedPool | None = None
        self._key: tuple | None = None
        self._audit_queue: list[AuditEvent] = []
        self._audit_writer: asyncio.Task | None = None

    # -- pool ------------------------------------------------------------------------------

    async def _pool(self, *, migrate: bool | None = None):
        if self._given_pool is not None:
            if (self.auto_migrate if migrate is None else migrate) and not self._given_migrated:
                async with self._given_pool.acquire() as conn:
                    await apply_migrations(conn)
                self._given_migrated = True
            return self._given_pool
        loop = asyncio.get_running_loop()
        shared = self._shared
        if shared is not None and self._key[1] is loop and not shared.pool._closed:
            return shared.pool
        dsn, options = _connect_options(self.dsn)
        key = (dsn, loop, options.get("statement_cache_size"))
        lock = _POOL_LOCKS.setdefault(key, asyncio.Lock())
        async with lock:
            shared = _POOLS.get(key)
            if shared is None or shared.pool._closed:
                import asyncpg

                try:
                    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=self.pool_size,
                                                     timeout=5.0, reset=_reset_connection, **options)
                except Exception as exc:
                    if is_connection_error(exc):
                        raise self._unavailable(exc) from None
                    raise
                shared = _POOLS[key] = _SharedPool(pool)
            if self._shared is not shared:
                shared.users += 1
                self._shared, self._key = shared, key
            if (self.auto_migrate if migrate is None else migrate) and not shared.migrated:
                async with shared.pool.acquire() as conn:
                    await apply_migrations(conn)
                shared.migrated = True
        return shared.pool

    def _unavailable(self, exc: BaseException) -> TierUnavailable:
        reason, hint = _reason(exc)
        return TierUnavailable(f"{self.where} is unreachable: {reason}", hint=hint)

    async def _attempt(self, fn: Callable[[Any], Awaitable[Any]], *, patience: float = 0.0):
        """Run ``fn(conn)`` on a pooled connection; connection failures become ``TierUnavailable``.

        A connection that died under us is retried once at once (the pool reconnects); with
        ``patience`` the call keeps retrying for that many seconds (a server restarting).
        """
        deadline = None
        delay, retried = 0.05, False
        while True:
            try:
                shared = self._shared  # the common case, without a call: the pool exists on this loop
                pool = shared.pool if shared is not None and self._key[1] is asyncio.get_running_loop() \
                    and not shared.pool._closed else await self._pool()
                async with pool.acquire() as conn:
                    try:
                        return await fn(conn)
                    except Exception as exc:
                        if is_connection_error(exc):
                            conn.terminate()  # never hand a broken connection out again
                        raise
            except TierUnavailable as exc:
                deadline = deadline or time.monotonic() + patience
                if time.monotonic() >= deadline:
                    raise
                failure: BaseException = exc
            except Exception as exc:
                if not is_connection_error(exc) or _is_permanent(exc):
                    if is_connection_error(exc):
                        raise self._unavailable(exc) from None
                    raise
                if _is_lost(exc) and not retried:
                    retried = True
                    continue
                deadline = deadline or time.monotonic() + patience
                if time.monotonic() >= deadline:
                    raise self._unavailable(exc) from None
                failure = exc
            log.debug("%s: %s; retrying in %.2fs", self.where, failure, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _held(self, user_id: str) -> _Held | None:
        held = _HELD.get()
        if held is not None and held.tier is self and held.user_id == user_id and held.alive:
            return held
        return None

    async def _run(self, user_id: str, fn: Callable[[Any], Awaitable[Any]], *, write: bool = False,
                   replay: Callable[[Any], Awaitable[Any]] | None = None):
        """Run on the lock's connection when this coroutine holds the user's lock, else pooled.

        A write whose lock connection died is retried on a new connection for up to
        ``write_patience`` seconds: it may carry a rotated refresh token, which must not be lost.
        """
        held = self._held(user_id)
        if held is None:
            return await self._attempt(fn)
        try:
            result = await fn(held.conn)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            held.alive = False
            log.warning("%s: the lock's connection for %s was lost: %s", self.where, user_id, exc)
            await self._replay(held)  # what this transaction wrote before is gone with it
            return await self._attempt(replay or fn, patience=self.write_patience if write else 0.0)
        if write:
            held.writes.append(replay or fn)
        return result

    async def _replay(self, held: _Held) -> None:
        writes, held.writes = held.writes, []
        for write in writes:  # compare-and-swap writes: safe to repeat
            await self._attempt(write, patience=self.write_patience)

    # -- records ---------------------------------------------------------------------------

    def _record(self, row, secrets: bool = True) -> TokenRecord:
        data = dict(zip(_FIELDS, row))
        uid = data["user_id"]
        if secrets:
            data["access_token"] = self.keyring.decrypt(data["access_token"], uid)
            if data["refresh_token"]:
                data["refresh_token"] = self.keyring.decrypt(data["refresh_token"], uid)
        data["source"] = self.name
        record = object.__new__(TokenRecord)  # every field is set here: skip __init__'s per-field work
        record.__dict__ = data
        return record

    def _encrypt(self, value: str | None, user_id: str) -> str | None:
        return self.keyring.encrypt(value, user_id) if value else None

    async def get(self, user_id: str) -> TokenRecord | None:
        row = await self._run(user_id, lambda conn: conn.fetchrow(SELECT_ONE, user_id))
        return None if row is None else self._record(row)

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        rows = await self._attempt(lambda conn: conn.fetch(SELECT_ALL_SECRETS if secrets else SELECT_ALL_HIDDEN))
        return self._records(rows, secrets)

    async def list_page(self, after: str | None, limit: int, secrets: bool = False) -> list[TokenRecord]:
        """Up to ``limit`` users after ``after`` in user id order: keyset pages, so the board
        shows its first rows before the last of 100 000 arrive."""
        select = SELECT_ALL_SECRETS if secrets else SELECT_ALL_HIDDEN
        if after is None:
            rows = await self._attempt(lambda conn: conn.fetch(select + _FIRST_PAGE, limit))
        else:
            rows = await self._attempt(lambda conn: conn.fetch(select + _NEXT_PAGE, after, limit))
        return self._records(rows, secrets)

    def _records(self, rows, secrets: bool) -> list[TokenRecord]:
        if secrets:
            return [self._record(row) for row in rows]
        source, new, cls = self.name, object.__new__, ListedRecord
        out = []
        collecting = gc.isenabled()
        gc.disable()  # 100 000 new objects would trigger many full collections for nothing
        try:
            for row in rows:  # nothing to decrypt: wrap the row, copy nothing
                record = new(cls)
                record._row = row
                record.source = source
                out.append(record)
        finally:
            if collecting:
                gc.enable()
        return out

    async def put(self, record: TokenRecord, expected_version: int | None = None) -> TokenRecord:
        uid = record.user_id
        enc_access = self.keyring.encrypt(record.access_token, uid)
        # $2 is the expected version for an update, the creation time for an insert.
        params = (uid, float(record.created_at or 0), enc_access,
                  self._encrypt(record.refresh_token, uid), record.expires_at, list(record.scopes),
                  record.account_email, record.account_uuid, record.organization_uuid,
                  record.organization_name, record.subscription_type, record.refresh_count,
                  record.last_refresh_at, record.last_refresh_error_at, record.last_refresh_error,
                  record.refresh_failures, record.needs_login, record.last_used, _ACTOR.get() or self.actor)
        if expected_version is None:
            sql = UPSERT
        elif expected_version == 0:
            sql = INSERT_NEW
        else:
            sql = UPDATE_CAS
            params = (uid, int(expected_version)) + params[2:]

        async def write(conn):
            row = await conn.fetchrow(sql, *params)
            if row is None:
                raise await self._stale(conn, uid, expected_version)
            return row

        async def replay(conn):  # after a lost connection: our first attempt may have committed
            try:
                return await write(conn)
            except StaleWrite:
                mine = await conn.fetchrow(
                    f"SELECT version, COALESCE(date_part('epoch', created_at), 0), "
                    f"COALESCE(date_part('epoch', updated_at), 0), date_part('epoch', last_used) "
                    f"FROM {TOKENS} WHERE user_id = $1 AND access_token_encrypted = $2", uid, enc_access)
                if mine is None:
                    raise
                return mine

        row = await self._run(uid, write, write=True, replay=replay)
        return record.evolve(version=row[0], created_at=row[1], updated_at=row[2], last_used=row[3],
                             source=self.name)

    async def _stale(self, conn, user_id: str, expected: int | None) -> StaleWrite:
        current = await conn.fetchval(f"SELECT version FROM {TOKENS} WHERE user_id = $1", user_id)
        if expected == 0:
            return StaleWrite(f"user {user_id!r} already has stored tokens (version {current}); "
                              "the stored tokens were kept")
        stored = "they were deleted" if current is None else f"stored version {current}"
        return StaleWrite(f"user {user_id!r} was changed by someone else ({stored}, expected "
                          f"{expected}); the newer token was kept")

    async def delete(self, user_id: str) -> bool:
        async def remove(conn):
            return await conn.fetchval(DELETE, user_id)

        return bool(await self._run(user_id, remove, write=True))

    async def touch(self, user_id: str, when: float) -> None:
        await self._run(user_id, lambda conn: conn.execute(TOUCH, user_id, float(when)))

    async def health(self) -> TierHealth:
        try:
            kid = self.keyring.primary_id
            row = await self._attempt(lambda conn: conn.fetchrow(
                f"""SELECT count(*), count(*) FILTER (WHERE access_token_encrypted NOT LIKE $1),
                    (SELECT max(id) FROM {MIGRATIONS}) FROM {TOKENS}""", f"enc:v1:{kid}:%"))
        except StorageError as exc:
            return TierHealth(self.name, DOWN, exc.message, writable=True)
        except Exception as exc:  # noqa: BLE001 - e.g. the schema is missing: say so, do not crash
            return TierHealth(self.name, DOWN, f"{self.where}: {str(exc).splitlines()[0]}", writable=True)
        users, old, schema = row
        detail = f"{describe_dsn(self.dsn)} ({users} users, schema {schema or 'none'})"
        if not self.keyring.enabled:
            detail += "; no encryption key: logins cannot be stored (set CLAUDE_TOKEN_ENCRYPTION_KEY)"
        elif old:
            detail += f"; {old} rows under other keys (run: claude-console rotate-key)"
        return TierHealth(self.name, UP, detail, writable=True)

    # -- the cross-replica lock ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, user_id: str) -> AsyncIterator[None]:
        if self._held(user_id) is not None:  # re-entrant within one holder
            yield
            return
        pool = await self._pool()
        conn = None
        # One round trip: the key is our own integer, so it is safe to write into the text.
        begin = f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(user_id)})"
        for attempt in (1, 2):  # a pooled connection may be dead after a restart: one retry
            try:
                conn = await pool.acquire()
                await conn.execute(begin)
                break
            except Exception as exc:
                if conn is not None:
                    await _release_quietly(pool, conn, broken=is_connection_error(exc))
                    conn = None
                if not is_connection_error(exc):
                    raise
                if attempt == 2 or not _is_lost(exc):
                    raise self._unavailable(exc) from None
        held = _Held(self, user_id, conn)
        token = _HELD.set(held)
        try:
            yield
        finally:
            _HELD.reset(token)
            await self._finish_lock(pool, held)

    row_lock_timeout = 5.0  # seconds a refresh waits for its row before giving up, unspent

    async def lock_row(self, user_id: str) -> None:
        """Inside ``locked(user)``, before a refresh spends the token: take the row lock too, so
        the save after the provider's answer never waits for anyone (a restore, an admin's
        ``SELECT ... FOR UPDATE``). Raises ``StorageError`` if the row stays locked."""
        held = self._held(user_id)
        if held is None:
            return
        _, x = _errors()
        try:
            await held.conn.execute(f"SET LOCAL lock_timeout = {int(self.row_lock_timeout * 1000)}")
            await held.conn.fetchval(f"SELECT 1 FROM {TOKENS} WHERE user_id = $1 FOR UPDATE", user_id)
        except x.LockNotAvailableError:
            raise StorageError(f"user {user_id!r}'s row is locked by another session (a restore, a key "
                               f"rotation or an open SELECT ... FOR UPDATE) for over {self.row_lock_timeout:g}s; "
                               "nothing was refreshed", hint="retry when that session ends") from None

    async def _finish_lock(self, pool, held: _Held) -> None:
        """Commit, even after an error: what was written inside (a failure note) must stay."""
        try:
            if held.alive:
                try:
                    await held.conn.execute("COMMIT")
                except Exception as exc:
                    if not is_connection_error(exc):
                        with contextlib.suppress(Exception):
                            await held.conn.execute("ROLLBACK")
                        raise
                    held.alive = False
                    log.warning("%s: commit for %s lost (%s); writing again", self.where, held.user_id, exc)
                    await self._replay(held)
        finally:
            await _release_quietly(pool, held.conn, broken=not held.alive)

    # -- background refresh claims ---------------------------------------------------------

    async def claim_due(self, *, limit: int, window: float, keepalive: float, lease: float, owner: str,
                        backoff_base: float, backoff_cap: float) -> list[tuple[str, int]]:
        """Claim up to ``limit`` users due for a refresh: ``(user_id, version)`` each."""
        rows = await self._attempt(lambda conn: conn.fetch(
            CLAIM_DUE, float(window), float(keepalive), float(backoff_base), float(backoff_cap),
            int(limit), float(lease), owner))
        return [(r[0], r[1]) for r in rows]

    async def migrate(self) -> list[str]:
        """Apply the shipped migrations that are missing; return their ids."""
        pool = await self._pool(migrate=False)
        try:
            async with pool.acquire() as conn:
                applied = await apply_migrations(conn)
        except Exception as exc:
            if is_connection_error(exc):
                raise self._unavailable(exc) from None
            raise
        if self._shared is not None:
            self._shared.migrated = True
        self._given_migrated = True
        return applied

    async def schema_version(self) -> str | None:
        return await self._attempt(lambda conn: conn.fetchval(f"SELECT max(id) FROM {MIGRATIONS}"))

    # -- bulk: backups and restores ----------------------------------------------------------
    # Restores write through COPY into a session temporary table (emptied at each commit), then
    # one upsert. Times travel as float8 seconds and become timestamps in SQL.

    _BULK = "claude_console_bulk"
    _BULK_COLUMNS = (("user_id", "text"), ("expected", "bigint"),
                     *((c, {"scopes": "text[]", "refresh_count": "integer", "refresh_failures": "integer",
                            "needs_login": "boolean"}.get(c, "float8" if c in _TIMES else "text"))
                       for c in _SET_COLUMNS),
                     ("created_at", "float8"), ("updated_at", "float8"), ("last_used", "float8"),
                     ("created_by", "text"), ("updated_by", "text"))
    _BULK_CREATE = (f"CREATE TEMP TABLE IF NOT EXISTS {_BULK} ("
                    + ", ".join(f"{c} {t}" for c, t in _BULK_COLUMNS) + ") ON COMMIT DELETE ROWS")
    # $1 actor (created/updated by when the row has none), $2 true: write whatever the versions.
    _BULK_UPSERT = f"""WITH u AS (
    INSERT INTO {USERS} AS u (user_id, user_email, claude_oauth_enabled, claude_oauth_connected_at)
    SELECT user_id, account_email, TRUE, now() FROM {_BULK}
    {_USER_ON_CONFLICT}
)
INSERT INTO {TOKENS} AS t (user_id, {", ".join(_SET_COLUMNS)}, created_at, updated_at, last_used,
    created_by, updated_by, version)
SELECT b.user_id, {", ".join(f"to_timestamp(b.{c})" if c in _TIMES else f"b.{c}" for c in _SET_COLUMNS)},
    COALESCE(to_timestamp(NULLIF(b.created_at, 0)), now()), COALESCE(to_timestamp(NULLIF(b.updated_at, 0)), now()),
    to_timestamp(b.last_used), COALESCE(b.created_by, $1), COALESCE(b.updated_by, $1), b.expected + 1
FROM {_BULK} b
WHERE $2 OR b.expected = 0 OR EXISTS (SELECT 1 FROM {TOKENS} x WHERE x.user_id = b.user_id)
ON CONFLICT (user_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _SET_COLUMNS)},
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, last_used = EXCLUDED.last_used,
    created_by = EXCLUDED.created_by, updated_by = EXCLUDED.updated_by, version = t.version + 1
WHERE $2 OR t.version = EXCLUDED.version - 1
RETURNING t.user_id"""

    async def export_rows(self, users: list[str] | None = None) -> tuple[list[str], list]:
        """Every row (or ``users``) in one query, tokens as stored (encrypted), with who created
        and last updated it: ``(field names, rows)`` for backups."""
        query = f"""SELECT user_id, access_token_encrypted, refresh_token_encrypted, {_TAIL},
            created_by, updated_by FROM {TOKENS}
            WHERE $1::text[] IS NULL OR user_id = ANY($1::text[])"""
        rows = await self._attempt(lambda conn: conn.fetch(query, users))
        return [*_FIELDS, "created_by", "updated_by"], rows

    async def put_many(self, records: list[TokenRecord], expected: dict[str, int] | None = None,
                       authors: dict[str, tuple[str | None, str | None]] | None = None) -> list[str]:
        """Bulk upsert in one transaction (COPY into a temporary table, then one upsert); returns
        the users written. With ``expected``, a user is written only while its version still
        equals ``expected[user]`` (0: not stored), so a refresh that landed meanwhile is kept.
        Rows keep the records' own times and authors (``authors[user] = (created_by, updated_by)``)."""
        authors, wanted = authors or {}, expected or {}
        uids = [r.user_id for r in records]
        if len(set(uids)) != len(uids):
            raise StorageError("a user appears twice in one bulk write; nothing was written")
        access = self.keyring.encrypt_many([r.access_token for r in records], uids)
        refresh = self.keyring.encrypt_many([r.refresh_token for r in records], uids)
        rows = []
        for r, enc_access, enc_refresh in zip(records, access, refresh):
            by = authors.get(r.user_id) or (None, None)
            rows.append((r.user_id, int(wanted.get(r.user_id, 0)), enc_access, enc_refresh or None,
                         float(r.expires_at), list(r.scopes),
                         r.account_email, r.account_uuid, r.organization_uuid, r.organization_name,
                         r.subscription_type, int(r.refresh_count or 0), r.last_refresh_at,
                         r.last_refresh_error_at, r.last_refresh_error, int(r.refresh_failures or 0),
                         bool(r.needs_login), float(r.created_at or 0), float(r.updated_at or 0), r.last_used,
                         by[0], by[1]))
        if not rows:
            return []
        names = [c for c, _ in self._BULK_COLUMNS]

        async def write(conn):
            async with conn.transaction():
                # JIT-compiling this upsert costs more than running it (~0.3 s a batch).
                await conn.execute(f"SET LOCAL jit = off; {self._BULK_CREATE}")
                await conn.copy_records_to_table(self._BULK, records=rows, columns=names)
                done = await conn.fetch(self._BULK_UPSERT, self.actor, expected is None)
            return [row[0] for row in done]

        return await self._attempt(write, patience=self.write_patience)

    async def append_audit_many(self, events: list[AuditEvent]) -> None:
        """Many events (a restore's) in one statement."""
        if not events:
            return
        columns = list(zip(*((float(e.ts), e.user_id, e.action, bool(e.ok), e.detail, e.actor) for e in events)))
        await self._attempt(lambda conn: conn.execute(
            f"""INSERT INTO {AUDIT} (ts, user_id, action, ok, detail, actor)
                SELECT to_timestamp(ts), u, a, o, d, w
                FROM unnest($1::float8[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[])
                    AS x(ts, u, a, o, d, w)""", *map(list, columns)))

    async def dump_table(self, users: list[str] | None = None, exclude: tuple[str, ...] = ()
                         ) -> tuple[list[tuple[str, str]], bytes, int]:
        """The tokens table for an SQL backup: ``(columns with their types, COPY text, rows)``,
        ciphertext exactly as stored."""
        async def dump(conn):
            found = await conn.fetch(
                """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                   WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""", TOKENS)
            columns = [(r[0], r[1]) for r in found if r[0] not in exclude]
            chunks: list[bytes] = []

            async def sink(chunk: bytes) -> None:
                chunks.append(bytes(chunk))

            names = ", ".join(f'"{c}"' for c, _ in columns)
            async with conn.transaction():  # SET LOCAL: pooled sessions are not reset on release
                await conn.execute("SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'")
                status = await conn.copy_from_query(
                    f"SELECT {names} FROM {TOKENS} WHERE $1::text[] IS NULL OR user_id = ANY($1::text[]) "
                    "ORDER BY user_id", users, output=sink, format="text")
            return columns, b"".join(chunks), int(str(status).split()[-1])

        return await self._attempt(dump)

    # -- pending logins --------------------------------------------------------------------

    async def save_pending(self, pending: PendingLogin) -> None:
        verifier = self.keyring.encrypt(pending.verifier, pending.state)
        await self._attempt(lambda conn: conn.execute(
            f"""INSERT INTO {PENDING} (state, user_id, verifier_encrypted, redirect_uri, created_at, expires_at)
                VALUES ($1, $2, $3, $4, to_timestamp($5::float8), to_timestamp($6::float8))
                ON CONFLICT (state) DO UPDATE SET user_id = EXCLUDED.user_id,
                    verifier_encrypted = EXCLUDED.verifier_encrypted, redirect_uri = EXCLUDED.redirect_uri,
                    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at""",
            pending.state, pending.user_id, verifier, pending.redirect_uri, pending.created_at,
            pending.expires_at))

    _PENDING_COLS = ("state, user_id, verifier_encrypted, redirect_uri, date_part('epoch', created_at), "
                     "date_part('epoch', expires_at)")

    def _pending(self, row) -> PendingLogin:
        state, user_id, verifier, redirect_uri, created_at, expires_at = row
        if is_encrypted(verifier):
            verifier = self.keyring.decrypt(verifier, state)
        return PendingLogin(state=state, verifier=verifier, user_id=user_id, redirect_uri=redirect_uri,
                            created_at=created_at, expires_at=expires_at)

    async def take_pending(self, state: str) -> PendingLogin | None:
        row = await self._attempt(lambda conn: conn.fetchrow(
            f"DELETE FROM {PENDING} WHERE state = $1 RETURNING {self._PENDING_COLS}", state))
        return None if row is None else self._pending(row)

    async def newest_pending(self, user_id: str | None = None) -> PendingLogin | None:
        row = await self._attempt(lambda conn: conn.fetchrow(
            f"""SELECT {self._PENDING_COLS} FROM {PENDING}
                WHERE ($1::text IS NULL OR user_id = $1) AND expires_at > now()
                ORDER BY created_at DESC LIMIT 1""", user_id))
        return None if row is None else self._pending(row)

    async def sweep_pending(self, now: float | None = None) -> int:
        when = time.time() if now is None else now
        status = await self._attempt(lambda conn: conn.execute(
            f"DELETE FROM {PENDING} WHERE expires_at <= to_timestamp($1::float8)", float(when)))
        return int(status.split()[-1])

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        """Queued for one background writer that inserts whatever has queued up in one
        statement: a refresh does not wait for its audit row, and 500 refreshes a second make a
        few inserts, not 500. Reading the trail, and closing, wait for the queue to drain."""
        self._audit_queue.append(event)
        writer = self._audit_writer
        if writer is None or writer.done():
            self._audit_writer = asyncio.get_running_loop().create_task(self._write_audit())

    async def _write_audit(self) -> None:
        while self._audit_queue:
            batch, self._audit_queue = self._audit_queue, []
            try:
                await self.append_audit_many(batch)
            except Exception as exc:  # noqa: BLE001 - an audit failure must not fail a token change
                log.error("%d audit events not recorded (%s): %s", len(batch),
                          ", ".join(sorted({f"{e.action} {e.user_id}" for e in batch})[:5]), exc)

    async def flush_audit(self) -> None:
        writer = self._audit_writer
        if writer is not None and not writer.done():
            try:
                same_loop = writer.get_loop() is asyncio.get_running_loop()
            except RuntimeError:
                same_loop = False
            if same_loop:
                await asyncio.shield(writer)

    async def audit_trail(self, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        await self.flush_audit()
        rows = await self._attempt(lambda conn: conn.fetch(
            f"""SELECT action, user_id, ok, detail, actor, date_part('epoch', ts) FROM {AUDIT}
                WHERE ($1::text IS NULL OR user_id = $1) ORDER BY id DESC LIMIT $2""", user_id, int(limit)))
        return [AuditEvent(action=r[0], user_id=r[1], ok=r[2], detail=r[3], actor=r[4], ts=r[5]) for r in rows]

    # -- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        await self.flush_audit()
        shared, key = self._shared, self._key
        self._shared = self._key = None
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        if _POOLS.get(key) is shared:
            del _POOLS[key]
            _POOL_LOCKS.pop(key, None)
        try:
            same_loop = asyncio.get_running_loop() is key[1]
        except RuntimeError:
            same_loop = False
        if same_loop:
            try:
                await asyncio.wait_for(shared.pool.close(), 5.0)
                return
            except Exception:  # noqa: BLE001 - a stuck connection must not block shutdown
                pass
        shared.pool.terminate()


async def _reset_connection(conn) -> None:
    """What a borrower could leave behind: only an open transaction (sessions are never changed
    here: settings use SET LOCAL, advisory locks are transaction-scoped). asyncpg's default
    reset costs a round trip on every release, which would double the cost of a read."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _release_quietly(pool, conn, *, broken: bool = False) -> None:
    """Give a connection back; a broken one is terminated so the pool opens a new one."""
    try:
        if broken:
            conn.terminate()
        await pool.release(conn)
    except Exception:  # noqa: BLE001 - a dead connection is dropped by the pool either way
        with contextlib.suppress(Exception):
            conn.terminate()


def default_owner() -> str:
    """Who holds a refresh claim: host and process, shown in the table while it lasts."""
    return f"{socket.gethostname()}:{os.getpid()}"
