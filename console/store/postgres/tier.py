"""The PostgreSQL tier: the shared, encrypted store every replica reads and writes.

Tokens are encrypted in this process before they reach the database (the keyring, user id as
associated data, key id inside each value). Single flight across replicas rests on two things
here: ``locked(user)`` is a transaction holding ``pg_advisory_xact_lock`` on the user
(transaction-scoped, so safe behind PgBouncer's transaction pooling), and every ``put`` with an
expected version is a compare-and-swap on the ``version`` column. Inside ``locked`` the reads
and writes for that user run on the lock's own connection, so the service's re-read and its
write happen in the lock's transaction.

The bulk paths (listing pages, backups, restores) are in ``bulk.py``, the background-refresh
claims in ``due.py``, key rotation in ``rotation.py``; this class puts them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from ...crypto import Keyring, is_encrypted
from ...errors import CryptoError, StaleWrite, StorageError, TierUnavailable
from ...tokens import TokenRecord, count_text
from ..base import (DOWN, UP, AuditEvent, PendingLogin, RotationReport, Tier, TierHealth, foreign_pending_error,
                    warn_foreign_pending)
from .bulk import BulkPaths
from .changes import ChangeFeed
from .connection import (POOL_LOCKS, POOLS, SharedPool, connect_options, describe_dsn, explain,
                         is_connection_error, is_lost, is_permanent, lock_key, release_quietly,
                         reset_connection)
from .due import DueClaims
from .facts import FactsPaths
from .migrations import apply_migrations
from .rotation import rotate_keys as rotate_all_keys
from .sql import (DELETE, FIELDS, INSERT_NEW, MIGRATIONS, PENDING, AUDIT, SELECT_ALL_HIDDEN,
                  SELECT_ALL_SECRETS, SELECT_ONE, SELECT_ONE_LOCKING, TOKENS, TOUCH, UPDATE_CAS, UPSERT)

log = logging.getLogger("console.store.postgres")


@dataclass
class _Held:
    tier: "PostgresTier"
    user_id: str
    conn: Any
    alive: bool = True
    row_locked: bool = False                     # the user's row is locked by this transaction too
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



class PostgresTier(BulkPaths, DueClaims, ChangeFeed, FactsPaths, Tier):
    name = "postgres"
    writable = True
    CAN_ROTATE_KEYS = CAN_MIGRATE = True

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
        self._given_lender = SharedPool(pool, lend=False) if pool is not None else None
        self._given_migrated = False
        self._shared: SharedPool | None = None
        self._key: tuple | None = None
        self._audit_queue: list[AuditEvent] = []
        self._audit_writer: asyncio.Task | None = None

    # -- pool ------------------------------------------------------------------------------

    async def _pool(self, *, migrate: bool | None = None):
        return (await self._lender(migrate=migrate)).pool

    def _ready(self) -> SharedPool | None:
        """The common case, without an await: the pool exists on this loop."""
        shared = self._shared
        if shared is not None and self._key[1] is asyncio.get_running_loop() and not shared.pool._closed:
            return shared
        return None

    async def _lender(self, *, migrate: bool | None = None) -> SharedPool:
        if self._given_lender is not None:
            if (self.auto_migrate if migrate is None else migrate) and not self._given_migrated:
                async with self._given_pool.acquire() as conn:
                    await apply_migrations(conn)
                self._given_migrated = True
            return self._given_lender
        loop = asyncio.get_running_loop()
        shared = self._shared
        if shared is not None and self._key[1] is loop and not shared.pool._closed:
            return shared
        dsn, options = connect_options(self.dsn)
        key = (dsn, loop, options.get("statement_cache_size"))
        lock = POOL_LOCKS.setdefault(key, asyncio.Lock())
        async with lock:
            shared = POOLS.get(key)
            if shared is None or shared.pool._closed:
                import asyncpg

                try:
                    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=self.pool_size,
                                                     timeout=5.0, reset=reset_connection, **options)
                except Exception as exc:
                    if is_connection_error(exc):
                        raise self._unavailable(exc) from None
                    raise
                shared = POOLS[key] = SharedPool(pool)
            if self._shared is not shared:
                shared.users += 1
                self._shared, self._key = shared, key
            if (self.auto_migrate if migrate is None else migrate) and not shared.migrated:
                conn = await shared.borrow()
                try:
                    await apply_migrations(conn)
                finally:
                    await shared.give(conn, clean=False)
                shared.migrated = True
        return shared

    def _unavailable(self, exc: BaseException) -> TierUnavailable:
        reason, hint = explain(exc)
        return TierUnavailable(f"{self.where} is unreachable: {reason}", hint=hint)

    async def attempt(self, fn: Callable[[Any], Awaitable[Any]], *, patience: float = 0.0):
        """Run ``fn(conn)`` on a pooled connection; connection failures become ``TierUnavailable``.

        A connection that died under us is retried once at once (the pool reconnects); with
        ``patience`` the call keeps retrying for that many seconds (a server restarting).
        """
        deadline = None
        delay, retried = 0.05, False
        while True:
            try:
                lender = self._ready() or await self._lender()
                conn = await lender.borrow()
                clean = broken = False
                try:
                    result = await fn(conn)
                    clean = True
                    return result
                except Exception as exc:
                    if is_connection_error(exc):
                        broken = True  # never hand a broken connection out again
                        if is_lost(exc):  # the server restarted: the idle ones are dead too
                            for idle in lender.drop_idle():
                                await release_quietly(lender.pool, idle)
                    raise
                finally:
                    await lender.give(conn, clean=clean, broken=broken)
            except TierUnavailable as exc:
                deadline = deadline or time.monotonic() + patience
                if time.monotonic() >= deadline:
                    raise
                failure: BaseException = exc
            except Exception as exc:
                if not is_connection_error(exc) or is_permanent(exc):
                    if is_connection_error(exc):
                        raise self._unavailable(exc) from None
                    raise
                if is_lost(exc) and not retried:
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
            return await self.attempt(fn)
        try:
            result = await fn(held.conn)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            held.alive = False
            log.warning("%s: the lock's connection for %s was lost: %s", self.where, user_id, exc)
            await self._replay(held)  # what this transaction wrote before is gone with it
            return await self.attempt(replay or fn, patience=self.write_patience if write else 0.0)
        if write:
            held.writes.append(replay or fn)
        return result

    async def _replay(self, held: _Held) -> None:
        writes, held.writes = held.writes, []
        for write in writes:  # compare-and-swap writes: safe to repeat
            await self.attempt(write, patience=self.write_patience)

    # -- records ---------------------------------------------------------------------------

    def decode_row(self, row, secrets: bool = True) -> TokenRecord:
        data = dict(zip(FIELDS, row))
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
        held = self._held(user_id)
        if held is not None and not held.row_locked:
            # Inside the user's lock, the read takes the row lock too when no one else holds it
            # (SKIP LOCKED: it never waits): what ``lock_row`` needs, without a round trip more.
            row = await self._run(user_id, lambda conn: conn.fetchrow(SELECT_ONE_LOCKING, user_id))
            if row is not None:
                held.row_locked = held.alive  # not if the read went to another connection
                return self.decode_row(row)
        row = await self._run(user_id, lambda conn: conn.fetchrow(SELECT_ONE, user_id))
        return None if row is None else self.decode_row(row)

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        return await self.fetch_records(secrets)

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
            row = await self.attempt(lambda conn: conn.fetchrow(
                f"""SELECT count(*), count(*) FILTER (WHERE access_token_encrypted NOT LIKE $1),
                    (SELECT max(id) FROM {MIGRATIONS}) FROM {TOKENS}""", f"enc:v1:{kid}:%"))
        except StorageError as exc:
            return TierHealth(self.name, DOWN, exc.message, writable=True)
        except Exception as exc:  # noqa: BLE001 - e.g. the schema is missing: say so, do not crash
            return TierHealth(self.name, DOWN, f"{self.where}: {str(exc).splitlines()[0]}", writable=True)
        users, old, schema = row
        detail = f"{describe_dsn(self.dsn)} ({count_text(users, 'user')}, schema {schema or 'none'})"
        if not self.keyring.enabled:
            detail += "; no encryption key: logins cannot be stored (set CLAUDE_TOKEN_ENCRYPTION_KEY)"
        elif old:
            detail += f"; {count_text(old, 'row')} under other keys (run: claude-console rotate-key)"
        return TierHealth(self.name, UP, detail, writable=True)

    # -- the cross-replica lock ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, user_id: str) -> AsyncIterator[None]:
        if self._held(user_id) is not None:  # re-entrant within one holder
            yield
            return
        lender = self._ready() or await self._lender()
        conn = None
        # One round trip: the key is our own integer, so it is safe to write into the text.
        begin = f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(user_id)})"
        for attempt in (1, 2):  # a pooled connection may be dead after a restart: one retry
            try:
                conn = await lender.borrow()
                await conn.execute(begin)
                break
            except BaseException as exc:  # cancelled while waiting for the lock too: give it back
                if conn is not None:
                    await lender.give(conn, clean=False, broken=is_connection_error(exc))
                    conn = None
                if not isinstance(exc, Exception):
                    raise
                if is_lost(exc):  # the server restarted: the idle ones are dead too
                    for idle in lender.drop_idle():
                        await release_quietly(lender.pool, idle)
                if not is_connection_error(exc):
                    raise
                if attempt == 2 or not is_lost(exc):
                    raise self._unavailable(exc) from None
        held = _Held(self, user_id, conn)
        token = _HELD.set(held)
        try:
            yield
        finally:
            _HELD.reset(token)
            await self._finish_lock(lender, held)

    row_lock_timeout = 5.0  # seconds a refresh waits for its row before giving up, unspent

    async def lock_row(self, user_id: str) -> None:
        """Inside ``locked(user)``, before a refresh spends the token: take the row lock too, so
        the save after the provider's answer never waits for anyone (a restore, an admin's
        ``SELECT ... FOR UPDATE``). Raises ``StorageError`` if the row stays locked."""
        lost = _HELD.get()
        if lost is not None and lost.tier is self and lost.user_id == user_id and not lost.alive:
            # The user's lock went with its connection (a read was retried elsewhere): another
            # process may hold it now, so nothing may be spent under it.
            raise self._unavailable(ConnectionError(f"the lock on {user_id!r} was lost with its connection"))
        held = self._held(user_id)
        if held is None or held.row_locked:  # the read under the lock took it already
            return
        from asyncpg.exceptions import LockNotAvailableError

        try:
            await held.conn.execute(f"SET LOCAL lock_timeout = {int(self.row_lock_timeout * 1000)}")
            await held.conn.fetchval(f"SELECT 1 FROM {TOKENS} WHERE user_id = $1 FOR UPDATE", user_id)
            held.row_locked = True
        except LockNotAvailableError:
            raise StorageError(f"user {user_id!r}'s row is locked by another session (a restore, a key "
                               f"rotation or an open SELECT ... FOR UPDATE) for over {self.row_lock_timeout:g}s; "
                               "nothing was refreshed", hint="retry when that session ends") from None
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            held.alive = False  # the lock went with its connection: nothing is spent, so stop here
            raise self._unavailable(exc) from None

    async def _finish_lock(self, lender: SharedPool, held: _Held) -> None:
        """Commit, even after an error: what was written inside (a failure note) must stay."""
        committed = False
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
                else:
                    committed = True
        finally:
            await lender.give(held.conn, clean=committed, broken=not held.alive)


    async def migrate(self) -> list[str]:
        """Apply the shipped migrations that are missing; return their ids."""
        lender = await self._lender(migrate=False)
        try:
            conn = await lender.borrow()
            try:
                applied = await apply_migrations(conn)
            finally:
                await lender.give(conn, clean=False)
        except Exception as exc:
            if is_connection_error(exc):
                raise self._unavailable(exc) from None
            raise
        if self._shared is not None:
            self._shared.migrated = True
        self._given_migrated = True
        return applied

    async def schema_version(self) -> str | None:
        return await self.attempt(lambda conn: conn.fetchval(f"SELECT max(id) FROM {MIGRATIONS}"))

    async def rotate_keys(self, *, batch: int = 500, progress: Callable[[RotationReport], None] | None = None,
                          on_batch: Callable[[list[str]], object] | None = None) -> RotationReport:
        """Re-encrypt every row and pending verifier to the first key, online, in batches."""
        return await rotate_all_keys(self, batch=batch, progress=progress, on_batch=on_batch)

    # -- pending logins --------------------------------------------------------------------

    async def save_pending(self, pending: PendingLogin) -> None:
        verifier = self.keyring.encrypt(pending.verifier, pending.state)
        await self.attempt(lambda conn: conn.execute(
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
        row = await self.attempt(lambda conn: conn.fetchrow(
            f"DELETE FROM {PENDING} WHERE state = $1 RETURNING {self._PENDING_COLS}", state))
        if row is None:
            return None
        try:
            return self._pending(row)
        except CryptoError:  # another key's login: put it back for the process that has the key
            await self.attempt(lambda conn: conn.execute(
                f"""INSERT INTO {PENDING} (state, user_id, verifier_encrypted, redirect_uri, created_at, expires_at)
                    VALUES ($1, $2, $3, $4, to_timestamp($5::float8), to_timestamp($6::float8))
                    ON CONFLICT (state) DO NOTHING""", *row))
            raise foreign_pending_error(self.keyring.value_key_id(row[2] or ""), row[1]) from None

    async def newest_pending(self, user_id: str | None = None) -> PendingLogin | None:
        """The newest live one this keyring can open: one under another key is skipped, with a
        warning (it expires and is swept like any other)."""
        rows = await self.attempt(lambda conn: conn.fetch(
            f"""SELECT {self._PENDING_COLS} FROM {PENDING}
                WHERE ($1::text IS NULL OR user_id = $1) AND expires_at > now()
                ORDER BY created_at DESC LIMIT 50""", user_id))
        for row in rows:
            try:
                return self._pending(row)
            except CryptoError:
                warn_foreign_pending(self.where, self.keyring.value_key_id(row[2] or ""), row[1])
        return None

    async def sweep_pending(self, now: float | None = None) -> int:
        when = time.time() if now is None else now
        status = await self.attempt(lambda conn: conn.execute(
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
        rows = await self.attempt(lambda conn: conn.fetch(
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
        if POOLS.get(key) is shared:
            del POOLS[key]
            POOL_LOCKS.pop(key, None)
        try:
            same_loop = asyncio.get_running_loop() is key[1]
        except RuntimeError:
            same_loop = False
        if same_loop:
            try:
                await asyncio.wait_for(shared.close(), 5.0)
                return
            except Exception:  # noqa: BLE001 - a stuck connection must not block shutdown
                pass
        shared.drop_idle()
        shared.pool.terminate()

