"""The usage lease on PostgreSQL shared by replicas, the refresher's due claims, Redis caching."""

from __future__ import annotations

import asyncio

import pytest

from console.config import load_settings
from console.service import AuthService
from console.store.postgres.facts import FACTS

pytestmark = pytest.mark.postgres


async def _tokens_row(svc: AuthService, uid: str):
    return await svc.store.primary.attempt(lambda conn: conn.fetchrow(
        'SELECT access_token_encrypted, refresh_token_encrypted, version, needs_login, last_refresh_error '
        'FROM "LiteLLM_ClaudeOAuthTokens" WHERE user_id = $1', uid))


async def test_two_replicas_share_the_lease(pg_env, login, emulator):
    first, second = AuthService(load_settings()), AuthService(load_settings())
    try:
        await login(first, "ada")
        await login(first, "bob")
        results = await asyncio.gather(*(svc.usage(u, fresh=True) for svc in (first, second) for u in ("ada", "bob")
                                         for _ in range(3)))
        assert emulator.state.usage_counts() == {"ada@example.com": 1, "bob@example.com": 1}
        assert sum(r.usage_fetched_by is not None for r in results) >= 2  # the winners' answers
        # The other replica reads what the first fetched, with who fetched it.
        seen = await second.usage_of(["ada"])
        assert seen["ada"].usage_fetched_by
    finally:
        await first.aclose()
        await second.aclose()


async def test_replicas_split_due_users_and_skip_long_lived(pg_env, login, emulator):
    settings = load_settings()
    first, second = AuthService(settings), AuthService(settings)
    try:
        for i in range(12):
            await login(first, f"u{i}")
        start = await first.start_login("setup", long_lived=True)
        await first.complete_login(emulator.approve(start.authorization_url, email="setup@example.com")["pasted"])
        asked = await asyncio.gather(first.poll_usage(concurrency=4), second.poll_usage(concurrency=4))
        assert sum(asked) == 12
        counts = emulator.state.usage_counts()
        assert counts == {f"u{i}@example.com": 1 for i in range(12)}
        assert await first.poll_usage() == 0  # nothing is due again within the interval
        facts = await first.usage("setup")
        assert "long-lived" in facts.usage_error
        owners = await first.store.primary.attempt(
            lambda conn: conn.fetch(f"SELECT DISTINCT usage_claimed_by FROM {FACTS} WHERE usage_claimed_by IS NOT NULL"))
        assert len(owners) >= 1
    finally:
        await first.aclose()
        await second.aclose()


async def test_usage_errors_never_alter_the_token_row(pg_env, login, emulator):
    svc = AuthService(load_settings().replace(usage_interval=0.0))
    try:
        await login(svc, "ada")
        before = await _tokens_row(svc, "ada")
        for status in (429, 500, 403, 401):
            emulator.state.add_fault("usage", status, retry_after=0 if status == 429 else None)
            facts = await svc.usage("ada", fresh=True)
            assert facts.usage_error
        assert await _tokens_row(svc, "ada") == before
    finally:
        await svc.aclose()


@pytest.mark.redis
async def test_redis_caches_the_facts(pg_env, redis_url, login, emulator, monkeypatch):
    url, prefix = redis_url
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("REDIS_PREFIX", prefix)
    svc = AuthService(load_settings())
    try:
        await login(svc, "ada")
        await svc.usage("ada", fresh=True)
        cached = await svc.store.cache.get_facts(["ada"])
        assert cached["ada"]["usage"]["windows"]
        # A read served from Redis does not touch PostgreSQL's table.
        await svc.store.primary.attempt(lambda conn: conn.execute(f"DELETE FROM {FACTS}"))
        assert (await svc.usage_of(["ada"]))["ada"].usage is not None
    finally:
        await svc.aclose()


async def test_brief_cells_read_by_the_server_equal_the_cells_of_the_stored_facts(pg_env):
    """The board reads plan and percentages out of the JSON in SQL; for every shape the facts
    can take (both profile shapes, unknown and missing windows, nulls, an error only, odd
    values), the cells must be the ones Python makes of the same stored facts."""
    from console.usage import Profile, Usage, Window, usage_cells

    svc = AuthService(load_settings())
    try:
        now = 1_800_000_000.0
        windows = {
            "both": (Window("five_hour", "5h", 81.5, now), Window("seven_day", "7d", 12.0, now)),
            "opus-peak": (Window("five_hour", "5h", 10.0, now), Window("seven_day_opus", "7d opus", 97.0, now)),
            "unknown": (Window("mystery_window", "mystery_window", 55.0, None),),
            "none": (),
        }
        profiles = {"max20": Profile(organization_type="claude_max", rate_limit_tier="default_claude_max_20x"),
                    "pro": Profile(organization_type="claude_pro"), "raw": Profile(rate_limit_tier="odd_tier"),
                    "empty": Profile()}
        changes = []
        for w, ws in windows.items():
            for p, profile in profiles.items():
                changes.append((f"{w}-{p}", {"usage": Usage(ws).to_dict(), "usage_fetched_at": now,
                                             "profile": profile.to_dict()}))
        changes += [("error-only", {"usage_error": "usage refused (429)", "usage_error_at": now}),
                    ("profile-only", {"profile": profiles["pro"].to_dict()}),
                    ("odd-windows", {"usage": {"windows": {"not": "a list"}}}),
                    ("odd-value", {"usage": {"windows": [{"name": "five_hour", "label": "5h", "utilization": "high"}]}}),
                    ("null-usage", {"usage": None, "profile": None})]
        await svc.store.primary.update_facts_many(changes)
        brief = await svc.usage_cells()
        stored = await svc.usage_of(None)
        assert set(brief) == set(stored) == {uid for uid, _ in changes}
        for uid, facts in stored.items():
            if uid == "odd-value":   # Python refuses the odd value; SQL reads it as no number
                assert brief[uid].p5h is None
                continue
            assert brief[uid] == usage_cells(facts), uid
        assert brief["both-max20"].plan == "Max 20x" and brief["both-max20"].p5h == 81.5
        assert brief["opus-peak-pro"].peak == 97.0 and brief["unknown-pro"].p5h is None
        some = await svc.usage_cells(["both-pro", "nobody"])
        assert set(some) == {"both-pro"}
        mark, everyone = await svc.usage_cells_changed(None)
        assert everyone == brief
        await svc.store.primary.update_facts("both-pro", {"usage": Usage(windows["opus-peak"]).to_dict()})
        later, changed = await svc.usage_cells_changed(mark)   # what was written after the mark
        assert later >= mark and set(changed) == {"both-pro"} and changed["both-pro"].peak == 97.0
        assert (await svc.usage_cells_changed(later + 1))[1] == {}
    finally:
        await svc.aclose()
