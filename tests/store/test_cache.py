"""The Redis cache tier against the real Redis: ciphertext only, short TTLs, invalidations."""

from __future__ import annotations

import asyncio
import time

import pytest

from console.crypto import Keyring, generate_key
from console.errors import TierUnavailable
from console.store.cache import RedisCacheTier
from console.tokens import TokenRecord

from support.waiting import wait_for

pytestmark = pytest.mark.redis

BUFFER = 300.0
ACCESS = "sk-ant-oat01-ACCESS-plaintext-marker-0123456789"
REFRESH = "sk-ant-ort01-REFRESH-plaintext-marker-0123456789"
EMAIL = "someone.secret@example.com"


def record(user_id: str = "alice", version: int = 1, expires_in: float = 3600.0, **changes) -> TokenRecord:
    base = TokenRecord(user_id=user_id, access_token=f"{ACCESS}-v{version}", refresh_token=f"{REFRESH}-v{version}",
                       expires_at=time.time() + expires_in, account_email=EMAIL, scopes=["user:inference"],
                       version=version, source="file")
    return base.evolve(**changes)


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_spec(generate_key())


@pytest.fixture
async def raw(redis_url):
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url[0])
    yield client
    await client.aclose()


@pytest.fixture
async def make_tier(redis_url, keyring):
    """``make_tier(**kwargs)``: tiers on the test prefix, closed afterwards."""
    url, prefix = redis_url
    made = []

    def make(**kwargs) -> RedisCacheTier:
        kwargs.setdefault("prefix", prefix)
        kwargs.setdefault("refresh_buffer", BUFFER)
        tier = RedisCacheTier(kwargs.pop("url", url), kwargs.pop("keyring", keyring), **kwargs)
        made.append(tier)
        return tier

    yield make
    for tier in made:
        await tier.close()


async def raw_values(raw, prefix: str) -> dict[bytes, bytes]:
    out = {}
    async for key in raw.scan_iter(match=f"{prefix}*"):
        if await raw.type(key) == b"string":
            out[key] = await raw.get(key)
    return out


async def test_entries_hold_ciphertext_only(make_tier, raw, redis_url):
    tier = make_tier()
    stored = record(version=4)
    await tier.put(stored)
    values = await raw_values(raw, redis_url[1])
    assert list(values) == [tier.key("alice").encode()]
    value = values[tier.key("alice").encode()]
    assert value.startswith(b"4|enc:v1:")
    for secret in (stored.access_token, stored.refresh_token, EMAIL, "user:inference"):
        assert secret.encode() not in value
    got = await tier.get("alice")
    assert (got.access_token, got.refresh_token, got.version, got.source) == \
        (stored.access_token, stored.refresh_token, 4, "redis")
    assert got.account_email == EMAIL


async def test_entry_copied_onto_another_user_is_not_served(make_tier, raw):
    tier = make_tier()
    await tier.put(record("alice"))
    await raw.set(tier.key("mallory"), await raw.get(tier.key("alice")), px=10_000)
    assert await tier.get("mallory") is None  # the user id is the associated data
    assert (await tier.get("alice")).user_id == "alice"


async def test_ttl_ends_before_the_refresh_point(make_tier, raw):
    tier = make_tier(max_ttl=60)
    await tier.put(record("far", expires_in=8 * 3600))
    await tier.put(record("soon", expires_in=BUFFER + 12))
    far_ms, soon_ms = await raw.pttl(tier.key("far")), await raw.pttl(tier.key("soon"))
    assert 55_000 < far_ms <= 60_000          # capped by the short maximum
    assert 9_000 < soon_ms <= 12_000          # ends before expires_at - refresh_buffer

    await tier.put(record("inside", expires_in=BUFFER - 5))  # already due for refresh
    assert await tier.get("inside") is None
    assert await raw.get(tier.key("inside")) == b"1|"        # a hole: no token at all


async def test_an_entry_past_the_refresh_point_is_not_served(make_tier):
    writer = make_tier(refresh_buffer=60)
    await writer.put(record(expires_in=200))          # fine for a 60 s buffer: cached
    assert await writer.get("alice") is not None
    strict = make_tier(refresh_buffer=300)            # for a 300 s buffer it is due for refresh
    assert await strict.get("alice") is None


async def test_needs_login_is_never_cached(make_tier, raw):
    tier = make_tier()
    await tier.put(record(version=2))
    await tier.put(record(version=3, needs_login=True))
    assert await tier.get("alice") is None
    assert await raw.get(tier.key("alice")) == b"3|"


async def test_without_a_key_nothing_is_cached_but_invalidations_flow(make_tier, raw, redis_url):
    keyless = make_tier(keyring=Keyring([]))
    heard: list = []
    listener = make_tier(keyring=Keyring([]))
    listener.listen(heard.append)
    await listener.get("alice")                        # starts its subscriber
    await keyless.put(record())
    for value in (await raw_values(raw, redis_url[1])).values():
        assert ACCESS.encode() not in value and REFRESH.encode() not in value
    assert await keyless.get("alice") is None
    await wait_for(lambda: "alice" in heard)


async def test_fill_never_replaces_a_newer_write(make_tier):
    tier = make_tier()
    old, new = record(version=1), record(version=2)
    await tier.put(new)
    await tier.fill(old)                               # a slow reader arrives late
    assert (await tier.get("alice")).version == 2
    await tier.put(old)                                # a late writer with an older version
    assert (await tier.get("alice")).version == 2
    await tier.delete("alice")
    await tier.fill(new)                               # a reader that read before the logout
    assert await tier.get("alice") is None
    await tier.put(record(version=1, access_token="after-relogin"))  # a write replaces a tombstone
    assert (await tier.get("alice")).access_token == "after-relogin"


async def test_fill_creates_a_missing_entry(make_tier):
    tier = make_tier()
    assert await tier.get("alice") is None
    await tier.fill(record(version=7))
    assert (await tier.get("alice")).version == 7


async def test_entry_under_an_unknown_key_is_a_miss(make_tier):
    await make_tier().put(record())
    other = make_tier(keyring=Keyring.from_spec(generate_key()))
    assert await other.get("alice") is None


async def test_a_write_invalidates_other_processes_not_itself(make_tier):
    a, b = make_tier(), make_tier()
    heard_a: list = []
    heard_b: list = []
    a.listen(heard_a.append)
    b.listen(heard_b.append)
    await a.get("x")
    await b.get("x")                                   # both subscribed now
    heard_a.clear()
    heard_b.clear()
    await a.put(record("alice"))
    await a.delete("bob")
    await wait_for(lambda: heard_b == ["alice", "bob"])
    await asyncio.sleep(0.05)
    assert heard_a == []


async def test_delete_many_tombstones_and_tells_every_replica(make_tier):
    a, b = make_tier(), make_tier()
    heard: list = []
    b.listen(heard.append)
    await b.get("x")                                   # subscribed now
    users = [f"user-{i:04d}" for i in range(2500)]      # three pipelined chunks of 1000
    for uid in users[:3] + users[-3:]:
        await a.put(record(uid, version=4))
    await wait_for(lambda: len([u for u in heard if u]) == 6, timeout=15)  # the puts' own messages, first
    heard.clear()
    await a.delete_many(users)
    for uid in users[:3] + users[-3:]:
        assert await a.get(uid) is None
        await a.fill(record(uid, version=4))            # a reader that read before the restore
        assert await a.get(uid) is None                 # cannot put the old entry back
    await wait_for(lambda: sorted(u for u in heard if u) == users, timeout=15)


@pytest.mark.serial  # measures time: not beside another worker's load
async def test_redis_down_fails_fast_and_health_says_down(make_tier):
    tier = make_tier(url="redis://127.0.0.1:1/0", retry_after=30)
    started = time.perf_counter()
    with pytest.raises(TierUnavailable, match="unreachable"):
        await tier.get("alice")
    with pytest.raises(TierUnavailable, match="is down"):  # no new attempt while backing off
        await tier.put(record())
    assert time.perf_counter() - started < 1.0
    health = await tier.health()
    assert (health.name, health.state) == ("redis", "down")
    assert "127.0.0.1:1" in health.detail


async def test_health_is_up_and_names_no_password(make_tier):
    health = await make_tier().health()
    assert (health.state, health.writable) == ("up", False)
    assert "ciphertext" in health.detail
    down = make_tier(url="redis://:hunter2-secret@127.0.0.1:1/3")
    assert "hunter2-secret" not in (await down.health()).detail
    assert down.where == "redis://127.0.0.1:1/3"


def test_settings_reach_the_tier(tmp_path):
    from console.config import load_settings
    from console.store import build_store

    config = tmp_path / "config.yaml"
    config.write_text("claude_oauth:\n  redis_url: redis://127.0.0.1:6379/2\n  redis_max_ttl: 15\n"
                      "  refresh_buffer: 120\n")
    settings = load_settings(config, env={"REDIS_PREFIX": "team-a:", "CLAUDE_TOKEN_FILE": str(tmp_path / "t.json")})
    cache = build_store(settings).cache
    assert isinstance(cache, RedisCacheTier)
    assert (cache.where, cache.prefix, cache.channel) == ("redis://127.0.0.1:6379/2", "team-a:", "team-a:invalidate")
    assert (cache.max_ttl, cache.refresh_buffer) == (15, 120)
    assert build_store(load_settings(env={"CLAUDE_TOKEN_FILE": str(tmp_path / "t.json")})).cache is None
