"""The service over a Redis cache shared by several replicas (real Redis, emulator, file or PostgreSQL).

Each "replica" is its own ``AuthService`` with its own store objects and memory cache,
sharing the token file (or a PostgreSQL database) and one Redis prefix, as processes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import time

import pytest

from console.crypto import generate_key
from console.errors import NotLoggedIn
from console.service import AuthService

from support.waiting import wait_for

pytestmark = pytest.mark.redis

HAVE_POSTGRES = importlib.util.find_spec("console.store.postgres") is not None


@pytest.fixture(params=["file", "postgres"])
def backend(request) -> str:
    if request.param == "postgres":
        if not HAVE_POSTGRES:
            pytest.skip("console/store/postgres.py does not exist yet: only the file tier is tested")
        request.getfixturevalue("pg_dsn")
    return request.param


@pytest.fixture
def cached_settings(settings, redis_url, backend, request):
    url, prefix = redis_url
    changes = dict(redis_url=url, redis_prefix=prefix, encryption_key=generate_key())
    if backend == "postgres":
        changes["database_url"] = request.getfixturevalue("pg_dsn")
    return settings.replace(**changes)


@pytest.fixture
async def replicas(cached_settings):
    """``replicas(n, **settings changes)``: services sharing the storage, closed afterwards."""
    made: list[AuthService] = []

    def make(n: int = 2, **changes) -> list[AuthService]:
        settings = cached_settings.replace(**changes) if changes else cached_settings
        out = [AuthService(settings) for _ in range(n)]
        made.extend(out)
        return out

    yield make
    for svc in made:
        await svc.aclose()


@pytest.fixture
async def raw(redis_url):
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url[0])
    yield client
    await client.aclose()


async def test_reads_from_redis_carry_source_and_version(replicas, login):
    a, b = replicas(2)
    saved = await login(a, "alice")
    got = await b.get_record("alice")                 # b has never read alice: Redis answers
    assert (got.source, got.version, got.access_token) == ("redis", saved.version, saved.access_token)
    fresh = await b.store.get_fresh("alice")          # the lock path skips the cache
    assert fresh.source == a.store.primary.name and fresh.version == saved.version
    assert a.status_report(got, "alice")["source"] == "redis"


async def test_redis_never_holds_a_plaintext_token(replicas, login, raw, redis_url):
    a, b = replicas(2)
    channel_messages: list[bytes] = []
    pubsub = raw.pubsub()
    await pubsub.subscribe(f"{redis_url[1]}invalidate")
    secrets = []
    for uid in ("alice", "bob"):
        saved = await login(a, uid, email=f"{uid}@corp.example")
        secrets += [saved.access_token, saved.refresh_token, saved.account_email]
        refreshed = await b.refresh(uid)
        secrets += [refreshed.access_token, refreshed.refresh_token]
        await b.get_record(uid)
    keys = [key async for key in raw.scan_iter(match=f"{redis_url[1]}*")]
    assert keys, "nothing was cached: the test would prove nothing"
    for key in keys:
        value = await raw.get(key)
        assert value.split(b"|", 1)[1].startswith(b"enc:v1:")
        for secret in secrets:
            assert secret.encode() not in value, f"{key!r} holds a plaintext secret"
    while (message := await pubsub.get_message(timeout=0.2)) is not None:
        channel_messages.append(message["data"])
    assert len(channel_messages) >= 4
    for data in channel_messages:
        for secret in secrets:
            assert secret.encode() not in str(data).encode()
    await pubsub.aclose()


async def test_cache_ttl_ends_before_refresh_point(replicas, login, raw, emulator, cached_settings):
    emulator.state.configure(access_ttl=int(cached_settings.refresh_buffer) + 8)
    (a,) = replicas(1)
    await login(a, "alice")
    ttl_ms = await raw.pttl(a.store.cache.key("alice"))
    assert 0 < ttl_ms <= 8_000
    emulator.state.configure(access_ttl=8 * 3600)
    await a.refresh("alice")
    ttl_ms = await raw.pttl(a.store.cache.key("alice"))
    assert 0 < ttl_ms <= cached_settings.redis_max_ttl * 1000


async def test_a_write_on_one_replica_evicts_the_others_memory(replicas, login):
    # A long memory TTL: only the invalidation can make b see the new token.
    a, b = replicas(2, memory_cache_ttl=300.0)
    await login(a, "alice")
    first = await b.get_access_token("alice")
    assert await b.get_access_token("alice") == first      # served from b's memory
    refreshed = await a.refresh("alice")
    assert refreshed.access_token != first
    await wait_for(lambda: _equals(b.get_access_token("alice"), refreshed.access_token), 3.0,
                   what="b to stop serving the old token from memory after a's write")

    await a.logout("alice")

    async def gone():
        try:
            await b.get_access_token("alice")
        except NotLoggedIn:
            return True
        return False

    await wait_for(gone, 3.0, what="b to stop serving a token after a's logout")


async def _equals(coro, expected) -> bool:
    return (await coro) == expected


async def test_stale_cache_never_returned_after_a_refresh(replicas, login, emulator):
    a, b = replicas(2, memory_cache_ttl=0.0)
    await login(a, "alice")
    before = await b.store.get("alice")                      # b read v1 (cache filled)
    slow_read = await b.store.get_fresh("alice")             # a slow reader holding v1 from the primary
    refreshed = await a.refresh("alice")
    now = await b.store.get("alice")                         # no waiting: the write replaced the entry
    assert (now.version, now.access_token) == (refreshed.version, refreshed.access_token)
    assert now.access_token != before.access_token
    await b.store.cache.fill(slow_read)                      # the slow reader's fill arrives late
    assert (await b.store.get("alice")).access_token == refreshed.access_token
    assert await b.get_access_token("alice") == refreshed.access_token

    # The refresh path re-reads past the cache: a wrong refresh token in Redis cannot feed it
    # (the emulator would answer invalid_grant to it and the user would be logged out).
    await a.store.cache.put(refreshed.evolve(refresh_token="sk-ant-ort01-not-a-real-one"))
    assert (await b.store.get("alice")).refresh_token == "sk-ant-ort01-not-a-real-one"
    again = await b.refresh("alice")
    assert again.refresh_count == refreshed.refresh_count + 1
    assert emulator.stats()["refresh_requests"] == 2


@pytest.mark.serial  # measures time: not beside another worker's load
async def test_redis_down_service_serves_from_the_lower_tier(replicas, login):
    (svc,) = replicas(1, redis_url="redis://127.0.0.1:1/0")
    saved = await login(svc, "alice")                    # the write lands in the primary
    svc.forget()
    started = time.perf_counter()
    for _ in range(20):
        svc.forget()
        assert await svc.get_access_token("alice") == saved.access_token
    assert time.perf_counter() - started < 1.0, "a down Redis slowed every read"
    record = await svc.get_record("alice")
    assert record.source == svc.store.primary.name
    health = {h.name: h for h in await svc.health()}
    assert health["redis"].state == "down"
    assert health[svc.store.primary.name].state == "up"
    assert any("redis" in w for w in svc.store.warnings)


class _Proxy:
    """A TCP relay in front of the real Redis that can be stopped and started (Redis "going down")."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in list(self.links):
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links |= {writer, up_writer}

        async def pipe(src, dst):
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}


async def test_redis_stopping_mid_run_then_coming_back(replicas, login, redis_url):
    from urllib.parse import urlsplit

    target = urlsplit(redis_url[0])
    proxy = _Proxy((target.hostname, target.port or 6379))
    await proxy.start()
    try:
        (svc,) = replicas(1, redis_url=f"redis://127.0.0.1:{proxy.port}/{target.path.strip('/') or 0}",
                          memory_cache_ttl=0.0)
        svc.store.cache.retry_after = 0.2
        saved = await login(svc, "alice")
        assert (await svc.get_record("alice")).source == "redis"

        await proxy.stop()
        for _ in range(5):
            assert await svc.get_access_token("alice") == saved.access_token
        assert (await svc.get_record("alice")).source == svc.store.primary.name
        assert {h.name: h.state for h in await svc.health()}["redis"] == "down"

        await proxy.start()                                  # same port: Redis is back
        await asyncio.sleep(0.25)
        assert {h.name: h.state for h in await svc.health()}["redis"] == "up"
        await wait_for(lambda: _source_is(svc, "alice", "redis"), 3.0, what="reads from Redis again")
    finally:
        with contextlib.suppress(Exception):
            await proxy.stop()


async def _source_is(svc: AuthService, uid: str, source: str) -> bool:
    record = await svc.get_record(uid)
    return record is not None and record.source == source
