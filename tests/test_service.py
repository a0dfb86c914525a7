import asyncio
import json
import subprocess
import sys
import textwrap
import time

import pytest

from console.errors import (LoginError, NeedsLogin, NotLoggedIn, OAuthError, StaleWrite,
                            TransientOAuthError)
from console.service import AuthService
from console.tokens import Status, TokenRecord


async def expire(service, uid="default", left=-10.0):
    """Make the stored token look expired (``left`` seconds from now) and drop memory."""
    record = await service.store.get_fresh(uid)
    stored = await service.store.put(record.evolve(expires_at=time.time() + left), record.version)
    service.forget()
    return stored


async def test_login_stores_account_and_audits(service, login):
    record = await login(service, "alice", "alice@example.com")
    assert record.account_email == "alice@example.com" and record.version == 1
    assert service.status_of(record) is Status.ACTIVE
    assert await service.get_access_token("alice") == record.access_token
    actions = [(e.action, e.ok) for e in await service.audit_trail("alice")]
    assert actions == [("login", True)]


async def test_twenty_coroutines_share_one_refresh(service, login, emulator):
    await login(service)
    old = await expire(service)
    emulator.state.configure(latency_ms=100)
    tokens = await asyncio.gather(*[service.get_access_token() for _ in range(20)])
    stats = emulator.stats()
    assert stats["refresh_requests"] == 1 and stats["refresh_replays"] == 0
    assert len(set(tokens)) == 1 and tokens[0] != old.access_token
    stored = await service.store.get_fresh("default")
    assert stored.access_token == tokens[0]
    assert stored.refresh_token != old.refresh_token  # rotated and saved
    assert stored.refresh_count == old.refresh_count + 1


PROCESS_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from console.service import AuthService

    async def main():
        svc = AuthService()
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # start together
        tokens = await asyncio.gather(*[svc.get_access_token() for _ in range(5)])
        await svc.aclose()
        print(json.dumps(tokens))

    asyncio.run(main())
""")


async def test_four_processes_share_one_refresh(service, login, emulator, console_env):
    await login(service)
    old = await expire(service)
    emulator.state.configure(latency_ms=300)
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS_SCRIPT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        results.extend(json.loads(out.strip().splitlines()[-1]))
    stats = emulator.stats()
    assert stats["refresh_requests"] == 1, stats
    assert stats["refresh_replays"] == 0
    assert len(set(results)) == 1 and results[0] != old.access_token
    assert (await service.store.get_fresh("default")).access_token == results[0]


async def test_replayed_refresh_token_logs_out_with_a_clear_reason(service, login, emulator):
    record = await login(service)
    # Someone outside the console spends the refresh token.
    import httpx

    async with httpx.AsyncClient() as client:
        r = await client.post(service.settings.token_url, json={
            "grant_type": "refresh_token", "refresh_token": record.refresh_token,
            "client_id": service.settings.client_id})
        assert r.status_code == 200
    await expire(service)
    with pytest.raises(NeedsLogin, match="invalid_grant") as info:
        await service.get_access_token()
    assert "claude-console login --user default" in str(info.value)
    stored = await service.store.get_fresh("default")
    assert stored.needs_login and service.status_of(stored) is Status.NEEDS_LOGIN
    with pytest.raises(NeedsLogin):  # terminal: no more requests are spent on it
        await service.get_access_token()
    assert emulator.stats()["refresh_requests"] == 2  # the outsider's and our one rejected try
    assert [e.action for e in await service.audit_trail()][:1] == ["refresh_failed"]


async def test_invalid_grant_rereads_before_declaring_logout(service, login, emulator):
    await login(service)
    old = await expire(service)
    real_refresh = service.oauth.refresh

    async def racing_refresh(token):
        # Another replica (ignoring our lock) refreshes first and stores the result...
        answer = await real_refresh(token)
        newer = old.evolve(access_token=answer.access_token, refresh_token=answer.refresh_token,
                           expires_at=answer.expires_at)
        await service.store.put(newer, old.version)
        # ...so our own attempt with the same token is a replay.
        return await real_refresh(token)

    service.oauth.refresh = racing_refresh
    token = await service.get_access_token()
    stored = await service.store.get_fresh("default")
    assert token == stored.access_token and not stored.needs_login


async def test_response_without_refresh_token_keeps_the_old_one(service, login, emulator):
    await login(service)
    old = await expire(service)
    emulator.state.configure(omit_refresh_token=True)
    await service.get_access_token()
    stored = await service.store.get_fresh("default")
    assert stored.refresh_token == old.refresh_token and stored.access_token != old.access_token


async def test_early_401_triggers_one_reactive_refresh(service, login, emulator):
    record = await login(service)
    emulator.state.revoke(access_token=record.access_token)  # server-side, before expires_at
    profile = await service.profile()
    assert profile["account"]["email_address"] == "default@example.com"
    assert emulator.stats()["refresh_requests"] == 1
    assert (await service.store.get_fresh("default")).access_token != record.access_token


async def test_401_after_refresh_is_reported(service, login, emulator):
    await login(service)
    emulator.state.add_fault("profile", 401, count=5)
    with pytest.raises(OAuthError, match="even after a refresh"):
        await service.profile()
    assert emulator.stats()["refresh_requests"] == 1


async def test_429_then_success(service, login, emulator):
    await login(service)
    await expire(service)
    emulator.state.add_fault("refresh", 429, count=1, retry_after=0)
    assert await service.get_access_token()
    assert emulator.stats()["refresh_requests"] == 2


async def test_5xx_leaves_tokens_untouched_and_records_the_failure(service, login, emulator):
    await login(service)
    old = await expire(service)
    emulator.state.add_fault("token", 502, count=20)
    with pytest.raises(TransientOAuthError):
        await service.get_access_token()
    stored = await service.store.get_fresh("default")
    assert (stored.access_token, stored.refresh_token) == (old.access_token, old.refresh_token)
    assert stored.refresh_failures == 1 and "502" in stored.last_refresh_error
    assert service.status_of(stored) is Status.EXPIRED_REFRESHABLE
    emulator.state.clear_faults()
    assert await service.get_access_token() != old.access_token  # the old refresh token still works
    assert (await service.store.get_fresh("default")).refresh_failures == 0


async def test_expiring_token_served_while_provider_is_down(service, login, emulator):
    await login(service)
    old = await expire(service, left=60)  # inside the 300 s buffer, still valid
    emulator.state.add_fault("token", 503, count=20)
    assert await service.get_access_token() == old.access_token


async def test_unknown_state_refused(service, login):
    with pytest.raises(LoginError, match="no pending login matches"):
        await service.complete_login("somecode#not-a-state")


async def test_expired_state_refused(service, emulator, settings, clock):
    svc = AuthService(settings.replace(pending_ttl=0.2), clock=clock)
    start = await svc.start_login("alice")
    approved = emulator.approve(start.authorization_url)
    clock.advance(0.3)
    with pytest.raises(LoginError, match="expired"):
        await svc.complete_login(approved["pasted"])
    assert emulator.stats()["exchange_requests"] == 0
    await svc.aclose()


async def test_memory_cache_lasts_its_ttl_on_the_service_clock(settings, login, clock):
    svc = AuthService(settings.replace(memory_cache_ttl=30.0), clock=clock)
    try:
        await login(svc, "alice")
        first = await svc.cached_record("alice")
        clock.advance(29)
        assert await svc.cached_record("alice") is first       # still fresh: served from memory
        clock.advance(2)
        again = await svc.cached_record("alice")
        assert again is not first and again.version == first.version   # read from the store again
    finally:
        await svc.aclose()


async def test_code_pasted_twice_refused_without_touching_tokens(service, emulator):
    start = await service.start_login("alice")
    pasted = emulator.approve(start.authorization_url)["pasted"]
    first = await service.complete_login(pasted)
    before = service.store.primary.path.read_bytes()
    with pytest.raises(LoginError, match="already used"):
        await service.complete_login(pasted)
    assert service.store.primary.path.read_bytes() == before
    assert (await service.get_record("alice")).access_token == first.access_token


async def test_bare_code_uses_the_newest_pending_login(service, emulator):
    await service.start_login("alice")
    newest = await service.start_login("alice")
    approved = emulator.approve(newest.authorization_url)
    record = await service.complete_login(approved["code"], "alice")
    assert record.user_id == "alice"
    with pytest.raises(LoginError, match="no login is pending for user 'bob'"):
        await service.complete_login("code-only", "bob")


async def test_callback_url_form(service, emulator):
    start = await service.start_login("carol")
    approved = emulator.approve(start.authorization_url)
    record = await service.complete_login(approved["callback_url"])
    assert record.user_id == "carol"


async def test_wrong_code_keeps_the_login_open_for_a_retry(service, emulator):
    start = await service.start_login("alice")
    with pytest.raises(LoginError, match="invalid_grant"):
        await service.complete_login(f"wrong-code#{start.state}")
    approved = emulator.approve(start.authorization_url)
    assert (await service.complete_login(approved["pasted"])).user_id == "alice"


async def test_code_for_another_user_refused(service, emulator):
    start = await service.start_login("alice")
    approved = emulator.approve(start.authorization_url)
    with pytest.raises(LoginError, match="belongs to the login of user 'alice'"):
        await service.complete_login(approved["pasted"], "bob")
    assert (await service.complete_login(approved["pasted"], "alice")).user_id == "alice"


async def test_logout_and_not_logged_in(service, login):
    await login(service, "alice")
    assert await service.logout("alice") is True
    assert await service.logout("alice") is False
    with pytest.raises(NotLoggedIn, match="claude-console login --user alice"):
        await service.get_access_token("alice")
    assert [e.action for e in await service.audit_trail("alice")][:1] == ["logout"]


async def test_env_token_is_read_and_refreshed_into_the_file(service, login, emulator, monkeypatch):
    seeded = await login(service, "seeded")  # a real token pair to put in the environment
    await service.logout("seeded")
    monkeypatch.setenv("CLAUDE_ACCESS_TOKEN", seeded.access_token)
    monkeypatch.setenv("CLAUDE_REFRESH_TOKEN", seeded.refresh_token)
    monkeypatch.setenv("CLAUDE_EXPIRES_AT", str(int((time.time() - 5) * 1000)))
    record = await service.get_record()
    assert record.source == "env"
    token = await service.get_access_token()
    assert token != seeded.access_token
    stored = await service.store.primary.get("default")
    assert stored.access_token == token  # the rotated pair is saved in the writable tier
    with pytest.raises(Exception):
        await service.store.tier("env").put(stored)


async def test_late_writer_cannot_roll_a_rotated_token_back(service, login):
    first = await login(service)
    newer = await service.refresh()
    with pytest.raises(StaleWrite):
        await service._save_tokens("default", first.evolve(access_token="sk-ant-oat01-stale"),
                                   expected_version=first.version)
    assert (await service.store.get_fresh("default")).access_token == newer.access_token


async def test_subclass_overrides_load_and_save(settings, emulator):
    saved: dict[str, TokenRecord] = {}

    class DictService(AuthService):
        async def _load_tokens(self, user_id):
            return saved.get(user_id)

        async def _save_tokens(self, user_id, record, expected_version=None):
            saved[user_id] = record.evolve(version=record.version + 1)
            return saved[user_id]

    svc = DictService(settings)
    start = await svc.start_login("zed")
    await svc.complete_login(emulator.approve(start.authorization_url)["pasted"])
    assert saved["zed"].access_token.startswith("sk-ant-oat01-")
    saved["zed"] = saved["zed"].evolve(expires_at=time.time() - 1)
    svc.forget()
    token = await svc.get_access_token("zed")
    assert saved["zed"].access_token == token and saved["zed"].refresh_count == 1
    assert not svc.store.primary.path.exists() or "zed" not in svc.store.primary.path.read_text()
    await svc.aclose()


async def test_status_report_never_holds_a_token(service, login):
    record = await login(service)
    report = service.status_report(record, "default")
    assert set(("authenticated", "expires_in", "needs_refresh", "user_id", "status", "source",
                "account_email")) <= set(report)
    assert record.access_token not in json.dumps(report) and record.refresh_token not in json.dumps(report)
    assert report["authenticated"] and not report["needs_refresh"]
