"""The HTTP API, endpoint by endpoint, against the emulator and real storage.

Most tests go through httpx's ASGI transport; ``test_every_endpoint_over_a_real_socket`` runs
the same flow through uvicorn on 127.0.0.1, over the file tier and over PostgreSQL. Every
response is scanned for tokens by the client fixtures.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from console.api.app import status_for
from console.api.auth import UNAUTHORIZED
from console.api.openapi import PATHS, SCHEMAS
from console.api import schemas
from console.errors import (ConsoleError, CryptoError, InvalidGrant, LoginError, NeedsLogin,
                            NotLoggedIn, OAuthError, RateLimited, StaleWrite, StorageCorrupt,
                            TierUnavailable, TransientOAuthError, UsageError)

from .helpers import AUTH, EXCHANGE, KEY, START, STATUS, assert_no_tokens, login_via_api

REFRESH, LOGOUT, USERS = "/auth/claude/oauth/refresh", "/auth/claude/oauth/logout", "/auth/claude/users"
PROTECTED = [("GET", START), ("POST", EXCHANGE), ("GET", STATUS), ("POST", REFRESH), ("POST", LOGOUT),
             ("GET", USERS), ("GET", "/metrics"), ("GET", "/openapi.json")]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the exposition")


# -- the whole flow ----------------------------------------------------------------------------

async def _flow(client: httpx.AsyncClient, emulator) -> None:
    """Every endpoint, in the order an operator meets them."""
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")

    before = await client.get(STATUS, params={"user_id": "alice"}, headers=AUTH)
    assert before.status_code == 200
    assert before.json()["authenticated"] is False and before.json()["status"] == "not_logged_in"

    started = await client.get(START, params={"user_id": "alice"}, headers=AUTH)
    assert started.status_code == 200
    body = started.json()
    assert body["user_id"] == "alice" and body["state"] in body["authorization_url"]
    assert 0 < body["expires_in"] <= 600
    approved = emulator.approve(body["authorization_url"], email="alice@example.com")
    code, _, state = approved["pasted"].partition("#")
    assert state == body["state"]

    done = await client.post(EXCHANGE, json={"code": f"{code}#{state}"}, headers=AUTH)
    assert done.status_code == 200, done.text
    assert done.json()["success"] is True and done.json()["user_id"] == "alice"
    assert done.json()["expires_in"] > 3000 and done.json()["account_email"] == "alice@example.com"

    status = (await client.get(STATUS, params={"user_id": "alice"}, headers=AUTH)).json()
    assert status["authenticated"] is True and status["status"] == "active"
    assert status["needs_refresh"] is False and status["account_email"] == "alice@example.com"
    assert status["expires_in"] > 3000 and status["refresh_count"] == 0

    users = (await client.get(USERS, headers=AUTH)).json()
    assert [u["user_id"] for u in users["users"]] == ["alice"] and users["count"] == 1

    refreshed = await client.post(REFRESH, json={"user_id": "alice"}, headers=AUTH)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_count"] == 1 and refreshed.json()["status"] == "active"
    assert emulator.stats()["refresh_requests"] == 1

    # force=false on a fresh token: nothing to do, no request to the provider.
    lazy = await client.post(REFRESH, json={"user_id": "alice", "force": False}, headers=AUTH)
    assert lazy.status_code == 200 and lazy.json()["refresh_count"] == 1
    assert emulator.stats()["refresh_requests"] == 1

    metrics = await client.get("/metrics", headers=AUTH)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert metric(metrics.text, 'claude_console_refreshes_total{result="ok"}') == 1
    assert metric(metrics.text, "claude_console_refresh_seconds_count") == 1
    assert metric(metrics.text, 'claude_console_users{status="active"}') == 1

    doc = await client.get("/openapi.json", headers=AUTH)
    assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.1")

    out = await client.post(LOGOUT, json={"user_id": "alice"}, headers=AUTH)
    assert out.json() == {"success": True, "user_id": "alice", "logged_out": True}
    again = await client.post(LOGOUT, json={"user_id": "alice"}, headers=AUTH)
    assert again.json()["logged_out"] is False
    after = (await client.get(STATUS, params={"user_id": "alice"}, headers=AUTH)).json()
    assert after["authenticated"] is False
    assert (await client.get(USERS, headers=AUTH)).json() == {"users": [], "count": 0}


async def test_every_endpoint_over_asgi(client, emulator):
    await _flow(client, emulator)


async def test_every_endpoint_over_a_real_socket(live_client, emulator, backend):
    """uvicorn on 127.0.0.1, the service made in the lifespan; file tier and PostgreSQL."""
    await _flow(live_client, emulator)
    health = (await live_client.get("/health", headers=AUTH)).json()
    assert health["primary"] == ("postgres" if backend == "postgres" else "file")


# -- exchange variants ---------------------------------------------------------------------------

async def test_exchange_takes_code_and_state_apart_or_a_callback_url(client, emulator):
    started = (await client.get(START, params={"user_id": "bob"}, headers=AUTH)).json()
    code, _, state = emulator.approve(started["authorization_url"])["pasted"].partition("#")
    done = await client.post(EXCHANGE, json={"code": code, "state": state}, headers=AUTH)
    assert done.status_code == 200 and done.json()["user_id"] == "bob"

    started = (await client.get(START, params={"user_id": "carol"}, headers=AUTH)).json()
    code, _, state = emulator.approve(started["authorization_url"])["pasted"].partition("#")
    url = f"https://platform.claude.com/oauth/code/callback?code={code}&state={state}"
    done = await client.post(EXCHANGE, json={"code": url}, headers=AUTH)
    assert done.status_code == 200 and done.json()["user_id"] == "carol"


async def test_exchange_refusals_are_one_line_and_keep_the_login_open(client, emulator):
    started = (await client.get(START, params={"user_id": "dave"}, headers=AUTH)).json()
    code, _, state = emulator.approve(started["authorization_url"])["pasted"].partition("#")

    mismatch = await client.post(EXCHANGE, json={"code": f"{code}#{state}", "state": "other"}, headers=AUTH)
    assert mismatch.status_code == 422 and "state" in mismatch.json()["error"]

    unknown = await client.post(EXCHANGE, json={"code": f"{code}#not-a-pending-state"}, headers=AUTH)
    assert unknown.status_code == 400 and "no pending login" in unknown.json()["error"]

    wrong = await client.post(EXCHANGE, json={"code": f"wrong{code}#{state}"}, headers=AUTH)
    assert wrong.status_code == 400 and "invalid_grant" in wrong.json()["error"]
    # The refused code left the login open: the right code still works, once.
    right = await client.post(EXCHANGE, json={"code": f"{code}#{state}"}, headers=AUTH)
    assert right.status_code == 200
    replay = await client.post(EXCHANGE, json={"code": f"{code}#{state}"}, headers=AUTH)
    assert replay.status_code == 400
    for response in (mismatch, unknown, wrong, replay):
        assert "\n" not in response.json()["error"] and set(response.json()) == {"error"}


# -- errors from the service ----------------------------------------------------------------------

async def test_refresh_errors_map_to_statuses_and_leave_tokens_alone(client, api_service, emulator, login):
    missing = await client.post(REFRESH, json={"user_id": "nobody"}, headers=AUTH)
    assert missing.status_code == 404 and "not logged in" in missing.json()["error"]

    await login(api_service, "erin")
    before = await api_service.get_record("erin")
    emulator.state.add_fault("refresh", 503, count=20)
    down = await client.post(REFRESH, json={"user_id": "erin"}, headers=AUTH)
    assert down.status_code == 502, down.text
    emulator.state.clear_faults()
    after = await api_service.get_record("erin")
    assert (after.access_token, after.refresh_token) == (before.access_token, before.refresh_token)

    emulator.state.revoke(email="erin@example.com")
    rejected = await client.post(REFRESH, json={"user_id": "erin"}, headers=AUTH)
    assert rejected.status_code == 409 and "log in again" in rejected.json()["error"]
    status = (await client.get(STATUS, params={"user_id": "erin"}, headers=AUTH)).json()
    assert status["status"] == "needs_login" and status["authenticated"] is False

    metrics = (await client.get("/metrics", headers=AUTH)).text
    assert metric(metrics, 'claude_console_refreshes_total{result="failed"}') == 2
    assert metric(metrics, 'claude_console_refreshes_total{result="ok"}') == 0
    assert metric(metrics, 'claude_console_users{status="needs_login"}') == 1


def test_status_codes_say_whose_move_it_is():
    cases = {NotLoggedIn("x"): 404, NeedsLogin("x"): 409, LoginError("x"): 400, UsageError("x"): 400,
             TierUnavailable("x"): 503, StaleWrite("x"): 409, StorageCorrupt("x"): 500, CryptoError("x"): 500,
             TransientOAuthError("x"): 502, RateLimited("x"): 502, OAuthError("x"): 502,
             InvalidGrant("x"): 502, ConsoleError("x"): 400}
    assert {type(e).__name__: status_for(e) for e in cases} == {type(e).__name__: s for e, s in cases.items()}


async def test_health_is_503_when_the_primary_tier_is_down(make_client, api_settings):
    pytest.importorskip("asyncpg")
    if not __import__("importlib").util.find_spec("console.store.postgres"):
        pytest.skip("console/store/postgres.py does not exist yet")
    from console.crypto import generate_key
    from console.service import AuthService

    broken = api_settings.replace(database_url="postgresql://postgres@127.0.0.1:9/nothing",
                                  encryption_key=generate_key())
    svc = AuthService(broken, face="api")
    try:
        client = make_client(svc, broken)
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "down" and health.json()["primary"] == "postgres"
        assert {"name": "postgres", "state": "down"} in health.json()["tiers"]
        live = await client.get("/health", params={"probe": "live"})
        assert live.status_code == 200 and live.json() == {"status": "alive"}
        start = await client.get(START, headers=AUTH)
        assert start.status_code == 503 and "postgres" in start.json()["error"].lower()
        metrics = (await client.get("/metrics", headers=AUTH)).text
        assert metric(metrics, 'claude_console_tier_up{tier="postgres"}') == 0
    finally:
        await svc.aclose()


# -- the master key -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"},
                                     {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY},
                                     {"Authorization": f"Bearer {KEY}x"}, {"X-Api-Key": KEY}],
                         ids=["none", "wrong", "basic", "no-scheme", "longer", "other-header"])
async def test_without_the_master_key_every_endpoint_says_401_and_nothing_else(client, method, path, headers):
    response = await client.request(method, path, headers=headers,
                                    params={"user_id": "x"} if method == "GET" else None,
                                    json={"user_id": "x"} if method == "POST" else None)
    assert response.status_code == 401
    assert response.json() == {"error": UNAUTHORIZED}
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_with_the_master_key_every_endpoint_answers(client):
    for method, path in PROTECTED:
        response = await client.request(method, path, headers={"authorization": f"bearer {KEY}"})
        assert response.status_code != 401, (method, path, response.text)


async def test_401_does_not_reveal_which_paths_exist_and_changes_nothing(client, api_service):
    unknown = await client.get("/no/such/path")
    assert unknown.status_code == 401
    start = await client.get(START, params={"user_id": "mallory"})
    assert start.status_code == 401
    assert await api_service.store.newest_pending("mallory") is None
    known = await client.get("/no/such/path", headers=AUTH)
    assert known.status_code == 404 and "no such endpoint" in known.json()["error"]
    wrong_method = await client.delete(STATUS, headers=AUTH)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


async def test_health_is_open_but_details_need_the_key(client):
    anonymous = await client.get("/health")
    assert anonymous.status_code == 200
    assert all(set(tier) == {"name", "state"} for tier in anonymous.json()["tiers"])
    trusted = await client.get("/health", headers=AUTH)
    file_tier = next(t for t in trusted.json()["tiers"] if t["name"] == "file")
    assert "detail" in file_tier and file_tier["writable"] is True
    bad = await client.get("/health", params={"probe": "sideways"})
    assert bad.status_code == 422


def test_without_a_master_key_the_app_is_not_built_unless_explicitly_open_on_loopback(api_settings):
    from console.api import create_api

    open_settings = api_settings.replace(master_key="")
    with pytest.raises(UsageError, match="no master key"):
        create_api(None, open_settings)
    with pytest.raises(UsageError, match="loopback"):
        create_api(None, open_settings, insecure_no_auth=True, host="0.0.0.0")
    for host in ("127.0.0.1", "::1", "localhost"):
        assert create_api(None, open_settings, insecure_no_auth=True, host=host) is not None


async def test_insecure_no_auth_lets_requests_through(make_client, api_service, api_settings):
    open_settings = api_settings.replace(master_key="")
    client = make_client(api_service, open_settings, insecure_no_auth=True)
    assert (await client.get(USERS)).status_code == 200
    health = await client.get("/health")
    assert "detail" in health.json()["tiers"][0]  # nobody to hide it from


# -- validation and limits -------------------------------------------------------------------------------

@pytest.mark.parametrize("params,status,words", [
    ({"user": "x"}, 422, "unknown query field 'user'"),
    ({"user_id": ""}, 422, "user_id is empty"),
    ({"user_id": "a" * 257}, 422, "the limit is 256"),
    ({"user_id": "tab\there"}, 422, "control characters"),
    ([("user_id", "a"), ("user_id", "b")], 422, "more than once"),
])
async def test_query_validation(client, params, status, words):
    response = await client.get(STATUS, params=params, headers=AUTH)
    assert response.status_code == status and words in response.json()["error"]


@pytest.mark.parametrize("content,ctype,status,words", [
    (b'{"code": ', "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 422, "must be a JSON object"),
    (b'{"state": "s"}', "application/json", 422, "missing body field 'code'"),
    (b'{"code": 5}', "application/json", 422, "code: expected a string, got a number"),
    (b'{"code": "c", "extra": 1}', "application/json", 422, "unknown body field 'extra'"),
    (b'{"code": "c"}', "text/plain", 415, "Content-Type: application/json"),
    (b"\xff\xfe", "application/json", 400, "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400, "not valid JSON"),
])
async def test_body_validation(client, content, ctype, status, words):
    response = await client.post(EXCHANGE, content=content, headers={**AUTH, "Content-Type": ctype})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


async def test_refresh_force_must_be_boolean_and_an_empty_body_means_defaults(client, api_service, login):
    bad = await client.post(REFRESH, json={"force": "yes"}, headers=AUTH)
    assert bad.status_code == 422 and "force" in bad.json()["error"]
    await login(api_service, "default")
    empty = await client.post(REFRESH, headers=AUTH)
    assert empty.status_code == 200 and empty.json()["user_id"] == "default"


async def test_bodies_over_the_limit_are_refused_before_reading_them_all(client):
    big = json.dumps({"code": "x" * (schemas.MAX_BODY_BYTES + 10)}).encode()
    declared = await client.post(EXCHANGE, content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert declared.status_code == 413 and "limit" in declared.json()["error"]

    async def chunks():  # no Content-Length: the stream is cut at the limit
        for _ in range(64):
            yield b"x" * 1024

    streamed = await client.post(EXCHANGE, content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert streamed.status_code == 413
    just_under = json.dumps({"code": "x" * (schemas.MAX_BODY_BYTES - 100)}).encode()
    fine = await client.post(EXCHANGE, content=just_under, headers={**AUTH, "Content-Type": "application/json"})
    assert fine.status_code == 422  # read and checked (the code is over 4096 characters), not refused as too big


# -- rate limit -------------------------------------------------------------------------------------------

async def test_login_starts_are_rate_limited_per_client(make_client, api_service, api_settings):
    first = make_client(api_service, api_settings, client_addr="10.0.0.1", login_burst=3, login_per_minute=1)
    codes = [(await first.get(START, params={"user_id": f"u{i}"}, headers=AUTH)).status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = await first.get(START, headers=AUTH)
    assert int(limited.headers["retry-after"]) >= 1 and "too many login starts" in limited.json()["error"]
    # Other endpoints are not limited, and the 429s stored nothing.
    assert (await first.get(STATUS, headers=AUTH)).status_code == 200
    assert await api_service.store.newest_pending("u4") is None
    metrics = (await first.get("/metrics", headers=AUTH)).text
    assert metric(metrics, "claude_console_login_starts_rate_limited_total") == 3


async def test_rate_limit_buckets_are_per_client_and_refill():
    from console.api.ratelimit import TokenBuckets

    now = [0.0]
    buckets = TokenBuckets(2, 60.0, max_clients=3, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0
    now[0] += 1.0
    assert buckets.take("a") == 0.0
    for name in "cdef":
        buckets.take(name)
    assert len(buckets) == 3  # bounded: the least recently seen clients went first


# -- concurrency over the socket ---------------------------------------------------------------------------

async def test_concurrent_status_and_refresh_share_one_refresh(live_client, emulator):
    await login_via_api(live_client, emulator, "frank")
    emulator.state.configure(latency_ms=1000)  # all 30 calls arrive while the one refresh runs
    calls = [live_client.post(REFRESH, json={"user_id": "frank"}, headers=AUTH) for _ in range(10)]
    calls += [live_client.get(STATUS, params={"user_id": "frank"}, headers=AUTH) for _ in range(20)]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code == 200 for r in responses)
    assert emulator.stats()["refresh_requests"] == 1
    assert {r.json()["refresh_count"] for r in responses[:10]} == {1}


def test_scan_catches_a_leaked_token():
    with pytest.raises(AssertionError):
        assert_no_tokens('{"x": "sk-ant-ort01-abcdefghijkl"}')
    with pytest.raises(AssertionError):
        assert_no_tokens('{"x": "sk-ant-oat01-…wxyz"}')
    assert_no_tokens('{"status": "active"}')


def test_openapi_matches_the_routes_and_the_validators():
    from console.api import create_api
    from console.config import Settings

    app = create_api(None, Settings(master_key="k"))
    routes = {route.path for route in app.routes}
    assert routes == set(PATHS)
    for name, fields in (("ExchangeRequest", schemas.EXCHANGE_BODY), ("RefreshRequest", schemas.REFRESH_BODY),
                         ("LogoutRequest", schemas.LOGOUT_BODY)):
        spec = SCHEMAS[name]
        assert set(spec["properties"]) == set(fields), name
        assert set(spec["required"]) == {f for f, v in fields.items() if v.required}, name
        assert spec["additionalProperties"] is False
    for name, spec in SCHEMAS.items():
        carried = {"access_token", "refresh_token"} & set(spec.get("properties", {}))
        assert carried == ({"access_token"} if name == "AccessToken" else set()), name
