"""The background refresher against PostgreSQL and the emulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from console.config import load_settings
from console.refresher import run_once, start
from console.service import AuthService

from support.waiting import wait_for

pytestmark = pytest.mark.postgres

TOKENS = '"LiteLLM_ClaudeOAuthTokens"'


@pytest.fixture
async def db(pg_dsn):
    import asyncpg

    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


async def expire_in(db, users, seconds: float) -> None:
    await db.execute(f"UPDATE {TOKENS} SET expires_at = now() + make_interval(secs => $2::float8) "
                     "WHERE user_id = ANY($1::text[])", list(users), float(seconds))


async def test_refreshes_what_is_due_and_leaves_the_rest(pg_env, db, emulator, login):
    service = AuthService(load_settings())
    try:
        for uid in ("due1", "due2", "expired", "fresh"):
            await login(service, uid)
        await expire_in(db, ["due1", "due2"], 60)
        await expire_in(db, ["expired"], -3600)
        before = {r.user_id: r for r in await service.list_users()}
        counts = await run_once(service, concurrency=4)
        after = {r.user_id: r for r in await service.list_users()}
        assert (counts.claimed, counts.refreshed, counts.failed) == (3, 3, 0)
        assert emulator.stats()["refresh_requests"] == 3
        for uid in ("due1", "due2", "expired"):
            assert after[uid].refresh_count == before[uid].refresh_count + 1
            assert service.status_of(after[uid]).value == "active"
        assert after["fresh"].version == before["fresh"].version
        again = await run_once(service)  # nothing is due any more
        assert again.claimed == 0 and emulator.stats()["refresh_requests"] == 3
        trail = [e.action for e in await service.audit_trail("due1")]
        assert trail[0] == "refresh"
    finally:
        await service.aclose()


async def test_idle_tokens_are_kept_alive(pg_env, db, emulator, login):
    service = AuthService(load_settings())
    try:
        await login(service, "idle")
        await login(service, "recent")
        await db.execute(f"UPDATE {TOKENS} SET created_at = now() - interval '3 days', last_refresh_at = NULL "
                         "WHERE user_id = 'idle'")
        counts = await run_once(service, keepalive=86400)
        assert (counts.claimed, counts.refreshed) == (1, 1)
        assert (await service.get_record("idle")).refresh_count == 1
        assert (await service.get_record("recent")).refresh_count == 0
    finally:
        await service.aclose()


async def test_failures_back_off_and_only_invalid_grant_is_terminal(pg_env, db, emulator, login):
    service = AuthService(load_settings(max_retries=0))
    try:
        await login(service, "flaky")
        await login(service, "revoked")
        await expire_in(db, ["flaky"], 30)  # claimed first: it meets the 503
        await expire_in(db, ["revoked"], 60)
        revoked = await service.get_record("revoked")
        emulator.state.revoke(refresh_token=revoked.refresh_token)
        emulator.state.add_fault("refresh", 503, count=1)
        counts = await run_once(service, concurrency=1)
        assert (counts.claimed, counts.failed, counts.needs_login) == (2, 1, 1)
        flaky = await service.get_record("flaky")
        assert flaky.refresh_failures == 1 and "503" in flaky.last_refresh_error
        assert (await service.get_record("revoked")).needs_login
        # the failed user backs off; the one needing a login is out of the schedule
        assert (await run_once(service)).claimed == 0
        await db.execute(f"UPDATE {TOKENS} SET last_refresh_error_at = now() - interval '2 minutes', "
                         "refresh_claimed_until = NULL WHERE user_id = 'flaky'")
        retry = await run_once(service, backoff_base=60)
        assert (retry.claimed, retry.refreshed) == (1, 1)
        healed = await service.get_record("flaky")
        assert healed.refresh_failures == 0 and healed.last_refresh_error is None
        assert emulator.stats()["refresh_replays"] == 1  # only the revoked token's one attempt
    finally:
        await service.aclose()


async def test_two_runners_split_the_work_without_a_double_refresh(pg_env, db, emulator, login):
    users = [f"u{i:02d}" for i in range(40)]
    seeder = AuthService(load_settings())
    await asyncio.gather(*[login(seeder, uid) for uid in users])
    await seeder.aclose()
    await expire_in(db, users, 30)
    emulator.state.configure(latency_ms=20)
    one, two = AuthService(load_settings()), AuthService(load_settings())  # two replicas, two pools
    try:
        first, second = await asyncio.gather(run_once(one, concurrency=4, owner="replica-a"),
                                             run_once(two, concurrency=4, owner="replica-b"))
        stats = emulator.stats()
        assert stats["refresh_requests"] == len(users) and stats["refresh_replays"] == 0
        assert first.refreshed + second.refreshed == len(users)
        assert first.refreshed > 0 and second.refreshed > 0
        counts = [r[0] for r in await db.fetch(f"SELECT refresh_count FROM {TOKENS}")]
        assert counts == [1] * len(users)
        owners = {r[0] for r in await db.fetch(f"SELECT DISTINCT refresh_claimed_by FROM {TOKENS}")}
        assert owners == {"replica-a", "replica-b"}
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_refresh_elsewhere_after_the_claim_is_not_repeated(pg_env, db, emulator, login):
    service = AuthService(load_settings())
    try:
        await login(service, "alice")
        await expire_in(db, ["alice"], 60)
        claimed = await service.claim_due_refreshes(limit=10, window=420, keepalive=86400, lease=120,
                                                    owner="me", backoff_base=60, backoff_cap=3600)
        assert [uid for uid, _ in claimed] == ["alice"]
        fresh = await service.refresh("alice")  # a request path got there first
        again = await service.refresh_claimed("alice", claimed[0][1])
        assert again.access_token == fresh.access_token and again.version == fresh.version
        assert emulator.stats()["refresh_requests"] == 1
    finally:
        await service.aclose()


async def _refreshed(service, user_id: str) -> bool:
    return (await service.get_record(user_id)).refresh_count == 1


async def test_start_runs_in_the_background_until_stopped(pg_env, db, emulator, login):
    service = AuthService(load_settings())
    try:
        await login(service, "alice")
        await expire_in(db, ["alice"], 60)
        stop = await start(service, interval=0.05)
        await wait_for(lambda: _refreshed(service, "alice"), 5.0, what="the background refresh")
        await stop()
        assert (await service.get_record("alice")).refresh_count == 1
    finally:
        await service.aclose()


async def test_cli_refresher_once(pg_env, db, emulator, login):
    service = AuthService(load_settings())
    await login(service, "alice")
    await service.aclose()
    await expire_in(db, ["alice"], 60)
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "console", "refresher", "--once",
                                                    "--concurrency", "2"],
                                   capture_output=True, text=True, env={**os.environ, **pg_env}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 due: 1 refreshed" in done.stdout
    assert emulator.stats()["refresh_requests"] == 1
    bad = subprocess.run([sys.executable, "-m", "console", "refresher", "--concurrency", "0"],
                         capture_output=True, text=True, env={**os.environ, **pg_env}, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


async def test_file_store_refreshes_what_is_due_in_this_process(service, emulator, login):
    """Without PostgreSQL there are no shared claims; the pass judges a listing instead."""
    await login(service, "due")
    await login(service, "fresh")
    due = await service.store.get_fresh("due")
    await service.store.put(due.evolve(expires_at=due.expires_at - due.expires_in() + 60), due.version)
    counts = await run_once(service, concurrency=2)
    assert (counts.claimed, counts.refreshed) == (1, 1)
    assert (await service.get_record("due")).refresh_count == 1
    assert (await service.get_record("fresh")).refresh_count == 0
    assert (await run_once(service)).claimed == 0
