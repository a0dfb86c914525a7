"""Caches never outlive a logout or a rotation: with a private redis-server frozen (SIGSTOP by
pid) while a logout or another process's refresh runs, no reader serves the old token more than
``memory_cache_ttl`` (5 s) afterwards, and the change that missed Redis lands once it thaws.

The writer has already found Redis frozen (a read timed out), so it does not even send the
tombstone or the new version then: the change is really missing from Redis, as after a
network partition, not merely waiting in the socket buffer of the frozen server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from console.config import load_settings
from console.crypto import generate_key
from console.errors import ConsoleError
from console.service import AuthService

PROMISE = 5.0      # memory_cache_ttl, the README's promise
FROZEN_FOR = 2.0   # as in the report


# Another process: one read finds Redis frozen, then a forced refresh of ann.
REFRESH_ELSEWHERE = """
import asyncio
from console.service import AuthService

async def main():
    async with AuthService(face="cli") as service:
        await service.get_record("ann")
        await service.refresh("ann", force=True)

asyncio.run(main())
"""


@pytest.fixture
def cached_env(request, console_env, private_redis, monkeypatch):
    """The console on the file tier or PostgreSQL, with the private Redis as its cache."""
    env = {**console_env, "REDIS_URL": private_redis.url, "CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("pg_dsn")
    for key in ("REDIS_URL", "CLAUDE_TOKEN_ENCRYPTION_KEY", "DATABASE_URL"):
        if key in env:
            monkeypatch.setenv(key, env[key])
    return env


async def _served_until(reader: AuthService, uid: str, old: str, seconds: float) -> float | None:
    """Poll ``get_access_token`` for ``seconds``; the last monotonic time ``old`` was served."""
    last, end = None, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            token = await reader.get_access_token(uid)
        except ConsoleError:
            token = None
        if token == old:
            last = time.monotonic()
        await asyncio.sleep(0.05)
    return last


async def _thaw_later(redis) -> None:
    await asyncio.sleep(FROZEN_FOR)
    redis.thaw()


async def _warm(reader: AuthService, uid: str) -> str:
    """The reader has the token in memory and has seen it served from Redis."""
    token = await reader.get_access_token(uid)
    reader.forget(uid)
    assert (await reader.get_record(uid)).source == "redis"
    return token


async def _raw_entry(url: str, key: str) -> bytes | None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        return await client.get(key)
    finally:
        await client.aclose()


@pytest.mark.parametrize("cached_env", ["file", "postgres"], indirect=True)
@pytest.mark.parametrize("round_", [1, 2])
async def test_logout_while_redis_is_frozen(cached_env, private_redis, emulator, login, round_):
    writer, reader = AuthService(load_settings()), AuthService(load_settings())
    try:
        await login(writer, "ann")
        await login(writer, "bob")
        old = await _warm(reader, "ann")
        bob = await _warm(reader, "bob")
        private_redis.freeze()
        thaw = asyncio.ensure_future(_thaw_later(private_redis))
        await writer.get_record("bob")  # times out on Redis: the writer now knows it is down
        started = time.monotonic()
        assert await writer.logout("ann")
        assert writer.store.unsent == 1  # the tombstone is queued, not dropped
        last = await _served_until(reader, "ann", old, PROMISE + 3)
        await thaw
        assert last is None or last - started <= PROMISE, \
            f"the logged-out token was served {last - started:.2f}s after the logout"
        for _ in range(100):  # the queued tombstone lands once Redis answers
            if writer.store.unsent == 0:
                break
            await asyncio.sleep(0.1)
        assert writer.store.unsent == 0
        assert await _raw_entry(private_redis.url, writer.store.cache.key("ann")) == b"0|"
        assert await reader.get_access_token("bob") == bob  # the other user was never logged out
    finally:
        private_redis.thaw()
        await writer.aclose()
        await reader.aclose()


@pytest.mark.parametrize("cached_env", ["file", "postgres"], indirect=True)
@pytest.mark.parametrize("round_", [1, 2])
async def test_refresh_in_another_process_while_redis_is_frozen(cached_env, private_redis, emulator, login,
                                                                round_):
    writer, reader = AuthService(load_settings()), AuthService(load_settings())
    try:
        await login(writer, "ann")
        old = await _warm(reader, "ann")
        private_redis.freeze()  # until the other process is done: its new version misses Redis
        started = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", REFRESH_ELSEWHERE],
            env={**os.environ, **cached_env}, capture_output=True, text=True, timeout=60)
        private_redis.thaw()
        assert done.returncode == 0, done.stderr
        assert "did not reach redis" in done.stderr  # the new version really missed Redis
        poll = PROMISE + 3 - (time.monotonic() - started)
        last = await _served_until(reader, "ann", old, poll)
        assert last is None or last - started <= PROMISE, \
            f"the rotated-away token was served {last - started:.2f}s after the refresh"
        fresh = await reader.get_access_token("ann")
        stored = await writer.store.get_fresh("ann")
        assert fresh == stored.access_token != old and not stored.needs_login  # nobody logged out
        assert emulator.stats()["refresh_replays"] == 0
    finally:
        private_redis.thaw()
        await writer.aclose()
        await reader.aclose()
