"""Reaching PostgreSQL: one shared pool per process and event loop, and what a failure means.

A failure is sorted into "the server is unreachable" (the tier is down: ``TierUnavailable`` with
one line saying why and what to do), "the connection was lost" (retry at once on a new one) and
"a retry cannot fix this" (wrong database, password or host). asyncpg is imported when the first
error is classified or the first pool made, never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry cannot fix (wrong database name, wrong password, no such host)."""
    _, x = _errors()
    return isinstance(exc, (x.InvalidCatalogNameError, x.InvalidAuthorizationSpecificationError,
                            socket.gaierror))


def is_lost(exc: BaseException) -> bool:
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


def explain(exc: BaseException) -> tuple[str, str]:
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
    if is_lost(exc):
        return "the connection was lost (server restarted?)", "retry; the pool reconnects by itself"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first, "check that PostgreSQL is running and DATABASE_URL is right"


# -- one pool per process (and event loop) ------------------------------------------------

IDLE_LIFETIME = 60.0   # seconds a lent connection sits unused before it goes back to the pool


@dataclass
class SharedPool:
    """The process's pool on one event loop, and the connections it lends without a round of
    the event loop: asyncpg's ``release`` runs through ``asyncio.shield`` (a task and three more
    turns of the loop), which made a one-row read cost 7 turns instead of 2. A connection given
    back is kept here, idle, and handed out again at once (``take``/``give``), unless someone is
    waiting in the pool for one; after ``IDLE_LIFETIME`` unused it goes back to the pool."""

    pool: Any
    users: int = 0
    migrated: bool = False
    idle: list = field(default_factory=list)   # [(connection, monotonic time given back)], newest last
    waiting: int = 0                           # borrowers inside pool.acquire() right now
    lend: bool = True                          # False: a pool the caller owns (and acquires from)
    _sweeper: Any = None

    async def borrow(self):
        """A connection: an idle one at once, else from the pool."""
        while self.idle:
            conn = self.idle.pop()[0]
            if _usable(conn):
                return conn
        self.waiting += 1
        try:
            return await self.pool.acquire()
        finally:
            self.waiting -= 1

    async def give(self, conn, *, clean: bool = True, broken: bool = False) -> None:
        """Keep ``conn`` for the next borrower. Back to the pool (which resets it, and waits out a
        cancelled query) instead: one whose last use failed (``clean`` false), a broken one, one
        inside a transaction, and any while another borrower waits in the pool."""
        if not (clean and self.lend) or broken or self.waiting or self.pool.is_closing() \
                or not _usable(conn) or conn.is_in_transaction():
            await release_quietly(self.pool, conn, broken=broken)
            return
        self.idle.append((conn, time.monotonic()))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_LIFETIME, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = time.monotonic() - IDLE_LIFETIME
        old = [conn for conn, since in self.idle if since <= cutoff]
        self.idle = [(conn, since) for conn, since in self.idle if since > cutoff]
        if old:
            asyncio.ensure_future(self._release_all(old))
        if self.idle:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_LIFETIME, self._sweep)

    async def _release_all(self, conns: list) -> None:
        for conn in conns:
            await release_quietly(self.pool, conn)

    def drop_idle(self) -> list:
        """Forget the idle connections (the server restarted, or the pool closes); returns them."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        conns, self.idle = [conn for conn, _ in self.idle], []
        return conns

    async def close(self) -> None:
        await self._release_all(self.drop_idle())
        await self.pool.close()


def _usable(conn) -> bool:
    try:
        return not conn.is_closed()
    except Exception:  # noqa: BLE001 - a proxy the pool took back (its connection died) raises
        return False


POOLS: dict[tuple, SharedPool] = {}
POOL_LOCKS: dict[tuple, asyncio.Lock] = {}


def connect_options(dsn: str) -> tuple[str, dict[str, Any]]:
    """Strip our own ``pgbouncer=true`` DSN flag: behind PgBouncer, no server-side statement cache."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = {k: v for k, v in query if k == "pgbouncer"}
    rest = [(k, v) for k, v in query if k != "pgbouncer"]
    options: dict[str, Any] = {}
    if flags.get("pgbouncer", "").lower() in ("1", "true", "yes", "on"):
        options["statement_cache_size"] = 0
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def lock_key(user_id: str) -> int:
    """The user's 64-bit advisory lock key (namespaced so other applications' keys differ)."""
    digest = hashlib.blake2b(f"claude-console:user:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)



async def reset_connection(conn) -> None:
    """What a borrower could leave behind: only an open transaction (sessions are never changed
    here: settings use SET LOCAL, advisory locks are transaction-scoped). asyncpg's default
    reset costs a round trip on every release, which would double the cost of a read."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def release_quietly(pool, conn, *, broken: bool = False) -> None:
    """Give a connection back; a broken one is terminated so the pool opens a new one."""
    try:
        if broken:
            conn.terminate()
        await pool.release(conn)
    except Exception:  # noqa: BLE001 - a dead connection is dropped by the pool either way
        with contextlib.suppress(Exception):
            conn.terminate()
