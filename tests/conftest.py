"""Shared fixtures: the provider emulator, an isolated store, throwaway PostgreSQL and Redis.

Outside CI a missing PostgreSQL or Redis skips the tests that need it, with the reason;
with CI=true it fails them, so a green CI run always means the servers were exercised.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
import uuid

import pytest

from console.config import load_settings
from console.emulator import EmulatorServer
from console.cli.sandbox import sandbox_env
from console.service import AuthService

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Variables that would leak the developer's own setup into a test.
ISOLATE = ("DATABASE_URL", "REDIS_URL", "CLAUDE_ACCESS_TOKEN", "CLAUDE_REFRESH_TOKEN", "CLAUDE_EXPIRES_AT",
           "CLAUDE_TOKEN_ENCRYPTION_KEY", "CONSOLE_CONFIG", "CLAUDE_CONSOLE_USER", "LITELLM_LOG_LEVEL",
           "CLAUDE_OAUTH_REFRESH_STYLE", "CLAUDE_OAUTH_REFRESH_URL", "CLAUDE_OAUTH_CLIENT_ID",
           "CLAUDE_OAUTH_SCOPES", "LITELLM_MASTER_KEY", "NO_COLOR")


def require_server(what: str, reason: str) -> None:
    """Skip outside CI, fail in CI: a test that needs a server must not pass without it."""
    message = f"{what} is not reachable: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires it)")
    pytest.skip(message)


# -- running in parallel (pytest-xdist) -------------------------------------------------------
# Each worker is its own process with its own emulator (session fixture), and every test makes
# its own database, key prefix and tmp_path, so tests share nothing but the servers. A test
# marked ``serial`` (it measures time) must still run alone: it takes a lock the other workers'
# tests hold shared, so they wait while it runs.

@contextlib.contextmanager
def _flock(path: str, mode: int):
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _turn(serial: bool):
    """A readers-writer lock over the run's workers; the turnstile keeps a serial test from starving."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # not under xdist: the tests run one by one anyway
        yield
        return
    base = os.path.join(tempfile.gettempdir(), f"cc-pytest-{run}")
    if serial:
        with _flock(f"{base}.turnstile", fcntl.LOCK_EX), _flock(f"{base}.tests", fcntl.LOCK_EX):
            yield
        return
    with contextlib.ExitStack() as held:
        with _flock(f"{base}.turnstile", fcntl.LOCK_EX):
            held.enter_context(_flock(f"{base}.tests", fcntl.LOCK_SH))
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    with _turn(item.get_closest_marker("serial") is not None):
        return (yield)


@pytest.fixture(autouse=True)
def _restore_logging():
    """``setup_logging`` (run by in-process CLI calls) must not leak into later tests' caplog."""
    import logging

    loggers = [logging.getLogger(name) for name in ("console", "httpx", "httpcore")]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="session")
def emulator_server():
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def emulator(emulator_server):
    """The emulator, reset before and after each test."""
    emulator_server.state.reset()
    yield emulator_server
    emulator_server.state.reset()


@pytest.fixture
def console_env(tmp_path, emulator, monkeypatch) -> dict[str, str]:
    """Environment pointing the console at the emulator and a private token folder.

    Applied to ``os.environ`` for in-process tests; pass ``{**os.environ}`` to subprocesses.
    """
    for name in ISOLATE:
        monkeypatch.delenv(name, raising=False)
    env = sandbox_env(emulator.url, str(tmp_path / "store"))
    env.update(CLAUDE_OAUTH_BACKOFF_BASE="0.01", CLAUDE_OAUTH_BACKOFF_CAP="0.2",
               HOME=str(tmp_path / "home"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class ManualClock:
    """The service's clock for tests (``AuthService(clock=...)``): it starts at the real time
    and moves only when told, so a test ages pending logins and caches without sleeping."""

    def __init__(self) -> None:
        self.wall, self.mono = time.time(), time.monotonic()

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(console_env):
    return load_settings()


@pytest.fixture
async def service(settings):
    svc = AuthService(settings)
    yield svc
    await svc.aclose()


@pytest.fixture
def login(emulator):
    """``await login(service, user_id, email=None)``: a full PKCE login through the emulator."""
    async def do(service: AuthService, user_id: str = "default", email: str | None = None):
        start = await service.start_login(user_id)
        approved = emulator.approve(start.authorization_url, email=email or f"{user_id}@example.com")
        return await service.complete_login(approved["pasted"])

    return do


@pytest.fixture
async def pg_dsn():
    """A throwaway PostgreSQL database (DSN), dropped afterwards."""
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover
        require_server("PostgreSQL", f"asyncpg missing: {exc}")
    try:
        admin = await asyncpg.connect(TEST_DATABASE_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_server("PostgreSQL", f"{TEST_DATABASE_URL}: {exc}")
    name = f"cc_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = TEST_DATABASE_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        if admin.is_closed():  # the server was restarted during the test
            admin = await asyncpg.connect(TEST_DATABASE_URL, timeout=30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def pg_env(console_env, pg_dsn, monkeypatch) -> dict[str, str]:
    """``console_env`` plus a throwaway PostgreSQL database and a fresh encryption key."""
    from console.crypto import generate_key

    env = {**console_env, "DATABASE_URL": pg_dsn, "CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()}
    for name in ("DATABASE_URL", "CLAUDE_TOKEN_ENCRYPTION_KEY"):
        monkeypatch.setenv(name, env[name])
    return env


@pytest.fixture
async def redis_url():
    """``(url, prefix)``: the test Redis and a key prefix of its own, cleaned afterwards."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover
        require_server("Redis", f"redis-py missing: {exc}")
    client = aioredis.from_url(TEST_REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # redis raises its own ConnectionError family
        await client.aclose()
        require_server("Redis", f"{TEST_REDIS_URL}: {exc}")
    prefix = f"cc-test-{uuid.uuid4().hex[:10]}:"
    try:
        yield TEST_REDIS_URL, prefix
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@pytest.fixture(scope="session")
def _private_pg_cluster():
    from faultkit import PrivatePostgres

    cluster = PrivatePostgres()
    why = cluster.available
    if why:
        cluster.destroy()
        require_server("a private PostgreSQL", why)
    try:
        cluster.init()
    except Exception as exc:  # noqa: BLE001 - reported as a skip (or a CI failure) with the reason
        cluster.destroy()
        require_server("a private PostgreSQL", str(exc))
    yield cluster
    cluster.destroy()


@pytest.fixture
def private_pg(_private_pg_cluster):
    """A PostgreSQL cluster of this test session's own (initdb in a temp folder, own port), that
    a test may stop and start; it is running again after each test."""
    cluster = _private_pg_cluster
    if not cluster.running:
        cluster.start()
    yield cluster
    if not cluster.running:
        cluster.start()


@pytest.fixture
async def private_pg_env(console_env, private_pg, monkeypatch) -> dict[str, str]:
    """``console_env`` on a throwaway database in the private cluster, with an encryption key."""
    import asyncpg

    from console.crypto import generate_key

    admin = await asyncpg.connect(private_pg.dsn, timeout=10)
    name = f"cc_private_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = private_pg.dsn.rsplit("/", 1)[0] + f"/{name}"
    env = {**console_env, "DATABASE_URL": dsn, "CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()}
    for key in ("DATABASE_URL", "CLAUDE_TOKEN_ENCRYPTION_KEY"):
        monkeypatch.setenv(key, env[key])
    yield env
    if not private_pg.running:
        private_pg.start()
    with contextlib.suppress(Exception):
        admin = await asyncpg.connect(private_pg.dsn, timeout=30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def private_redis():
    """A redis-server of this test's own, on its own port; SIGSTOP/SIGCONT it by pid."""
    import shutil

    from faultkit import PrivateRedis

    if not shutil.which("redis-server"):
        require_server("a private Redis", "redis-server is not installed")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tiny_disk():
    """A 4 MiB tmpfs (root only; skipped elsewhere) that a test may fill up."""
    from faultkit import TinyDisk

    disk = TinyDisk()
    why = disk.mount()
    if why:
        disk.unmount()
        pytest.skip(why)
    yield disk
    disk.unmount()
