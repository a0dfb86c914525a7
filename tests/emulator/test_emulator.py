"""The emulator must fail the way Claude's real endpoints fail, or client tests prove nothing.

Everything here goes over real HTTP to an `EmulatorServer` on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from console.emulator import EmulatorServer, EmulatorState, create_app
from console.emulator.state import DEFAULT_CLIENT_ID, s256

from support.waiting import wait_for_sync

RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
BETA = {"anthropic-beta": "oauth-2025-04-20"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def bearer(token: str, beta: bool = False) -> dict:
    h = {"authorization": f"Bearer {token}"}
    if beta:
        h.update(BETA)
    return h


@pytest.fixture
def emu(emulator):
    """The shared emulator from tests/conftest.py, reset around each test."""
    return emulator


@pytest.fixture
def client(emu):
    with httpx.Client(base_url=emu.url, timeout=10) as c:
        yield c


def login(emu, client, email=None, scopes=None):
    """Authorize + approve + exchange; returns the token response."""
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(32)
    kw = {"scopes": scopes} if scopes else {}
    approved = emu.approve(emu.build_authorize_url(challenge, state, **kw), email=email)
    r = client.post(
        "/v1/oauth/token",
        json={
            "grant_type": "authorization_code",
            "code": approved["code"],
            "state": state,
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": emu.redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()


def refresh(client, token, **extra):
    body = {"grant_type": "refresh_token", "refresh_token": token, "client_id": DEFAULT_CLIENT_ID}
    body.update(extra)
    return client.post("/v1/oauth/token", json=body)


def assert_invalid_grant(r, description=None):
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_grant"
    if description is not None:
        assert body["error_description"] == description


# ---------------------------------------------------------------- PKCE and authorize


def test_rfc7636_appendix_b_vector():
    assert s256(RFC_VERIFIER) == RFC_CHALLENGE


def test_full_browser_flow_with_rfc_vector(emu, client):
    state = "rfc-state-123"
    url = emu.build_authorize_url(RFC_CHALLENGE, state)
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 302
    loc = urlsplit(r.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == emu.redirect_uri
    q = parse_qs(loc.query)
    code = q["code"][0]
    assert q["state"] == [state]

    page = client.get(r.headers["location"])
    assert page.status_code == 200
    m = re.search(r'<code id="code">([^<]*)</code>', page.text)
    assert m and m.group(1) == f"{code}#{state}"
    assert "EMULATOR" in page.text

    r = client.post(
        "/v1/oauth/token",
        json={
            "grant_type": "authorization_code",
            "code": code,
            "state": state,
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": emu.redirect_uri,
            "code_verifier": RFC_VERIFIER,
        },
    )
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "Bearer"
    assert tok["access_token"].startswith("sk-ant-oat01-")
    assert tok["refresh_token"].startswith("sk-ant-ort01-")
    assert tok["expires_in"] == 28800
    assert tok["scope"] == "org:create_api_key user:profile user:inference"
    assert tok["account"]["email_address"] == "sandbox-user@example.com"
    assert set(tok["organization"]) == {"uuid", "name"}

    prof = client.get("/api/oauth/profile", headers=bearer(tok["access_token"]))
    assert prof.status_code == 200
    assert prof.json()["account"]["uuid"] == tok["account"]["uuid"]
    assert prof.json()["organization"]["uuid"] == tok["organization"]["uuid"]

    usage = client.get("/api/oauth/usage", headers=bearer(tok["access_token"], beta=True))
    assert usage.status_code == 200
    assert usage.json()["five_hour"]["utilization"] == 0.0
    assert "resets_at" in usage.json()["seven_day"]

    key = client.post("/api/oauth/claude_cli/create_api_key", headers=bearer(tok["access_token"]))
    assert key.status_code == 200 and key.json()["raw_key"].startswith("sk-ant-api03-")


def test_cai_alias_and_login_hint_pick_stable_accounts(emu, client):
    _, challenge = pkce()
    url = emu.build_authorize_url(challenge, "s1", login_hint="alice@example.com")
    url = url.replace("/oauth/authorize", "/cai/oauth/authorize")
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 302
    a1 = login(emu, client, email="alice@example.com")
    a2 = login(emu, client, email="alice@example.com")
    b = login(emu, client, email="bob@example.com")
    assert a1["account"] == a2["account"] and a1["account"]["email_address"] == "alice@example.com"
    assert a1["organization"] == a2["organization"]
    assert b["account"]["uuid"] != a1["account"]["uuid"]


def test_the_consoles_short_authorize_url_is_read_as_a_standard_parser_reads_it(emu, client):
    """``:`` and ``/`` unencoded in the query (RFC 3986 3.4) and a 22-character state."""
    from console import oauth
    from console.config import Settings

    settings = Settings(authorize_url=emu.authorize_url, redirect_uri=emu.redirect_uri,
                        client_id=DEFAULT_CLIENT_ID)
    verifier = oauth.new_verifier()
    state = oauth.new_state()
    url = oauth.authorize_url(settings, state=state, challenge=oauth.challenge_for(verifier))
    assert "redirect_uri=http://" in url and "scope=org:create_api_key+" in url
    page = client.get(url, follow_redirects=False)
    assert page.status_code == 302
    location = parse_qs(urlsplit(page.headers["location"]).query)
    assert location["state"] == [state]
    approved = client.post("/_emulator/approve", json={"url": url}).json()
    assert approved["pasted"] == f"{approved['code']}#{state}"
    r = client.post("/v1/oauth/token", json={
        "grant_type": "authorization_code", "code": approved["code"], "state": state,
        "client_id": DEFAULT_CLIENT_ID, "redirect_uri": emu.redirect_uri, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    assert set(r.json()["scope"].split()) == set(settings.scopes.split())


def test_approve_endpoint_get_and_post(emu, client):
    _, challenge = pkce()
    url = emu.build_authorize_url(challenge, "st")
    got = client.get("/_emulator/approve", params={"url": url}).json()
    posted = client.post("/_emulator/approve", json={"url": url, "email": "x@example.com"}).json()
    for res in (got, posted):
        assert res["pasted"] == f"{res['code']}#st"
        assert res["callback_url"].startswith(emu.redirect_uri + "?code=")
    assert got["code"] != posted["code"]
    assert client.post("/_emulator/approve", json={}).status_code == 400


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "not-the-client"},
        {"response_type": "token"},
        {"code_challenge_method": "plain"},
        {"code_challenge": None},
        {"state": None},
        {"redirect_uri": None},
    ],
)
def test_authorize_rejects_bad_requests(emu, client, change):
    _, challenge = pkce()
    url = emu.build_authorize_url(challenge, "st")
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    for k, v in change.items():
        if v is None:
            params.pop(k)
        else:
            params[k] = v
    r = client.get("/oauth/authorize", params=params, follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers
    r = client.post("/_emulator/approve", json={"url": str(httpx.URL(emu.authorize_url, params=params))})
    assert r.status_code == 400 and "error" in r.json()
    with pytest.raises(ValueError):
        emu.approve(str(httpx.URL(emu.authorize_url, params=params)))


# ---------------------------------------------------------------- code exchange


def exchange_body(emu, code, verifier, state, **over):
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "state": state,
        "client_id": DEFAULT_CLIENT_ID,
        "redirect_uri": emu.redirect_uri,
        "code_verifier": verifier,
    }
    body.update(over)
    return body


def fresh_code(emu):
    verifier, challenge = pkce()
    approved = emu.approve(emu.build_authorize_url(challenge, "the-state"))
    return approved["code"], verifier


def test_pkce_mismatch_rejected_without_burning_code(emu, client):
    code, verifier = fresh_code(emu)
    other, _ = pkce()
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, other, "the-state"))
    assert_invalid_grant(r)
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, "short", "the-state"))
    assert_invalid_grant(r)
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state"))
    assert r.status_code == 200


def test_code_is_single_use(emu, client):
    code, verifier = fresh_code(emu)
    assert client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state")).status_code == 200
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state"))
    assert_invalid_grant(r)


def test_redirect_uri_and_state_must_match(emu, client):
    code, verifier = fresh_code(emu)
    r = client.post(
        "/v1/oauth/token",
        json=exchange_body(emu, code, verifier, "the-state", redirect_uri="https://console.anthropic.com/oauth/code/callback"),
    )
    assert_invalid_grant(r, "Invalid 'redirect_uri' in request")
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "another-state"))
    assert_invalid_grant(r, "State mismatch")
    body = exchange_body(emu, code, verifier, "x")
    del body["state"]  # state is optional on the exchange
    assert client.post("/v1/oauth/token", json=body).status_code == 200


def test_code_expires_after_ten_minutes(emu, client):
    code, verifier = fresh_code(emu)
    real = emu.state.clock
    emu.state.clock = lambda: real() + 601
    try:
        r = client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state"))
    finally:
        emu.state.clock = real
    assert_invalid_grant(r, "Authorization code has expired")


def test_token_endpoint_error_codes(emu, client):
    code, verifier = fresh_code(emu)
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state", client_id="evil"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    body = exchange_body(emu, code, verifier, "the-state")
    del body["code_verifier"]
    r = client.post("/v1/oauth/token", json=body)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/oauth/token", json={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = client.post("/v1/oauth/token", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/oauth/token", json=["a"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/oauth/token", json={"grant_type": "refresh_token"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    # form-encoded works too
    r = client.post("/v1/oauth/token", data=exchange_body(emu, code, verifier, "the-state"))
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- refresh


def test_refresh_rotates_and_old_token_dies(emu, client):
    emu.state.configure(family_revocation=False)  # isolate rotation; family revocation has its own test
    tok = login(emu, client)
    r = refresh(client, tok["refresh_token"], scope="user:profile user:inference")
    assert r.status_code == 200
    new = r.json()
    assert new["refresh_token"] != tok["refresh_token"]
    assert new["access_token"] != tok["access_token"]
    assert new["scope"] == "user:profile user:inference"

    old = refresh(client, tok["refresh_token"])
    assert_invalid_grant(old, "Refresh token not found or invalid")
    assert emu.stats()["refresh_replays"] == 1

    newer = refresh(client, new["refresh_token"])
    assert newer.status_code == 200
    assert_invalid_grant(refresh(client, new["refresh_token"]), "Refresh token not found or invalid")
    assert_invalid_grant(refresh(client, "sk-ant-ort01-never-issued"), "Refresh token not found or invalid")
    assert emu.stats()["refresh_replays"] == 3
    r = refresh(client, newer.json()["refresh_token"], client_id="evil")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # a wrong client does not spend the token
    assert refresh(client, newer.json()["refresh_token"]).status_code == 200


def test_refresh_scope_cannot_grow(emu, client):
    tok = login(emu, client)
    r = refresh(client, tok["refresh_token"], scope="user:profile admin:everything")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert refresh(client, tok["refresh_token"]).status_code == 200


def test_family_revocation_on_replay(emu, client):
    tok = login(emu, client)
    new = refresh(client, tok["refresh_token"]).json()
    assert client.get("/api/oauth/profile", headers=bearer(new["access_token"])).status_code == 200

    assert_invalid_grant(refresh(client, tok["refresh_token"]))  # replay of the rotated token
    assert_invalid_grant(refresh(client, new["refresh_token"]), "Refresh token not found or invalid")
    r = client.get("/api/oauth/profile", headers=bearer(new["access_token"]))
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    st = emu.stats()
    assert st["refresh_replays"] == 2 and st["active_refresh_tokens"] == 0


def test_no_family_revocation_when_disabled(emu, client):
    r = client.post("/_emulator/config", json={"family_revocation": False})
    assert r.status_code == 200 and r.json()["family_revocation"] is False
    tok = login(emu, client)
    new = refresh(client, tok["refresh_token"]).json()
    assert_invalid_grant(refresh(client, tok["refresh_token"]))
    assert refresh(client, new["refresh_token"]).status_code == 200


def test_omit_refresh_token_keeps_old_valid(emu, client):
    tok = login(emu, client)
    client.post("/_emulator/config", json={"omit_refresh_token": True})
    first = refresh(client, tok["refresh_token"])
    assert first.status_code == 200 and "refresh_token" not in first.json()
    second = refresh(client, tok["refresh_token"])
    assert second.status_code == 200
    assert second.json()["access_token"] != first.json()["access_token"]
    assert emu.stats()["active_refresh_tokens"] == 1


def test_seed_style_refresh_needs_beta_header(emu, client):
    tok = login(emu, client)
    r = client.post("/v1/oauth/refresh", json={"refresh_token": tok["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/oauth/refresh", json={"refresh_token": tok["refresh_token"]}, headers=BETA)
    assert r.status_code == 200
    assert r.json()["refresh_token"] != tok["refresh_token"]
    r = client.post("/v1/oauth/refresh", json={"refresh_token": tok["refresh_token"]}, headers=BETA)
    assert_invalid_grant(r, "Refresh token not found or invalid")
    assert emu.stats()["refresh_requests"] == 3


# ---------------------------------------------------------------- API host


def test_profile_401_for_missing_unknown_revoked_expired(emu, client):
    assert client.get("/api/oauth/profile").status_code == 401
    assert client.get("/api/oauth/profile", headers=bearer("sk-ant-oat01-nope")).status_code == 401

    a = login(emu, client)["access_token"]
    r = client.post("/_emulator/revoke", json={"access_token": a})
    assert r.json() == {"revoked": 1}
    r = client.get("/api/oauth/profile", headers=bearer(a))
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"

    tok = login(emu, client)
    assert client.post("/_emulator/expire", json={"access_token": tok["access_token"]}).status_code == 200
    r = client.get("/api/oauth/profile", headers=bearer(tok["access_token"]))
    assert r.status_code == 401
    assert r.json()["error"]["message"].startswith("OAuth token has expired.")
    # expiry is not revocation: the refresh token still works
    assert refresh(client, tok["refresh_token"]).status_code == 200
    assert client.post("/_emulator/expire", json={"access_token": "nope"}).status_code == 404


def test_revoke_by_email_kills_everything(emu, client):
    tok = login(emu, client, email="carol@example.com")
    other = login(emu, client, email="dave@example.com")
    r = client.post("/_emulator/revoke", json={"email": "carol@example.com"})
    assert r.json()["revoked"] == 2
    assert client.get("/api/oauth/profile", headers=bearer(tok["access_token"])).status_code == 401
    assert_invalid_grant(refresh(client, tok["refresh_token"]))
    assert client.get("/api/oauth/profile", headers=bearer(other["access_token"])).status_code == 200
    rt = login(emu, client)["refresh_token"]
    assert client.post("/_emulator/revoke", json={"refresh_token": rt}).json() == {"revoked": 1}
    assert_invalid_grant(refresh(client, rt))


def test_messages_need_oauth_beta(emu, client):
    a = login(emu, client)["access_token"]
    req = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    r = client.post("/v1/messages", json=req, headers=bearer(a))
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "OAuth authentication is currently not supported."},
    }
    r = client.post("/v1/messages", json=req, headers=bearer(a, beta=True))
    assert r.status_code == 200
    msg = r.json()
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == "claude-sonnet-4-5"
    assert msg["content"][0]["type"] == "text" and msg["content"][0]["text"]
    r = client.post("/v1/messages", json=dict(req, stream=True), headers=bearer(a, beta=True))
    assert r.status_code == 200 and "event: message_stop" in r.text
    assert client.post("/v1/messages", json=req, headers=BETA).status_code == 401
    assert emu.stats()["messages_requests"] == 4


def test_create_api_key_needs_scope(emu, client):
    a = login(emu, client, scopes=["user:profile", "user:inference"])["access_token"]
    r = client.post("/api/oauth/claude_cli/create_api_key", headers=bearer(a))
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


# ---------------------------------------------------------------- faults, latency, control


def test_429_fault_with_retry_after_then_success(emu, client):
    tok = login(emu, client)
    r = client.post("/_emulator/faults", json={"endpoint": "token", "status": 429, "count": 2, "retry_after": 3})
    assert r.status_code == 200
    for _ in range(2):
        r = refresh(client, tok["refresh_token"])
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3"
        assert r.json()["error"] == {"type": "rate_limit_error", "message": "Rate limited. Please try again later."}
    r = refresh(client, tok["refresh_token"])  # the faults did not spend the token
    assert r.status_code == 200
    st = emu.stats()
    assert st["refresh_requests"] == 3 and st["refresh_ok"] == 1 and st["faults_served"] == 2


def test_5xx_faults_and_targets(emu, client):
    tok = login(emu, client)
    emu.state.add_fault("refresh", 503)
    code, verifier = fresh_code(emu)
    # a refresh fault does not touch the exchange
    assert client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state")).status_code == 200
    r = client.post("/v1/oauth/refresh", json={"refresh_token": tok["refresh_token"]}, headers=BETA)
    assert r.status_code == 503
    assert r.json() == {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}

    emu.state.add_fault("exchange", 500, body={"custom": True})
    code, verifier = fresh_code(emu)
    r = client.post("/v1/oauth/token", json=exchange_body(emu, code, verifier, "the-state"))
    assert r.status_code == 500 and r.json() == {"custom": True}
    assert emu.stats()["exchange_requests"] == 3

    client.post("/_emulator/faults", json={"endpoint": "any", "status": 502, "count": 5})
    assert client.get("/api/oauth/profile", headers=bearer(tok["access_token"])).status_code == 502
    assert client.get("/_emulator/faults").json()["faults"][0]["count"] == 4
    assert client.delete("/_emulator/faults").json() == {"cleared": 1}
    assert client.get("/api/oauth/profile", headers=bearer(tok["access_token"])).status_code == 200

    emu.state.add_fault("profile", 401)
    r = client.get("/api/oauth/profile", headers=bearer(tok["access_token"]))
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"

    assert client.post("/_emulator/faults", json={"endpoint": "nowhere", "status": 500}).status_code == 400
    assert client.post("/_emulator/faults", json={"endpoint": "token"}).status_code == 400


@pytest.mark.serial  # measures time: not beside another worker's load
def test_latency_delays_oauth_responses_not_control(emu, client):
    tok = login(emu, client)
    client.post("/_emulator/config", json={"latency_ms": 200})
    t = time.perf_counter()
    assert client.get("/api/oauth/profile", headers=bearer(tok["access_token"])).status_code == 200
    assert time.perf_counter() - t >= 0.2
    t = time.perf_counter()
    assert refresh(client, tok["refresh_token"]).status_code == 200
    assert time.perf_counter() - t >= 0.2
    t = time.perf_counter()
    client.get("/_emulator/stats")
    assert time.perf_counter() - t < 0.15


def test_config_validation_and_access_ttl(emu, client):
    assert client.post("/_emulator/config", json={"nope": 1}).status_code == 400
    assert client.post("/_emulator/config", json={"access_ttl": "long"}).status_code == 400
    assert client.post("/_emulator/config", json={"family_revocation": 1}).status_code == 400
    assert client.post("/_emulator/config", json={"latency_ms": -1}).status_code == 400
    assert client.get("/_emulator/config").json()["access_ttl"] == 28800
    client.post("/_emulator/config", json={"access_ttl": 60})
    tok = login(emu, client)
    assert tok["expires_in"] == 60
    assert refresh(client, tok["refresh_token"]).json()["expires_in"] == 60


def test_custom_client_id(emu, client):
    client.post("/_emulator/config", json={"client_id": "my-client"})
    _, challenge = pkce()
    url = emu.build_authorize_url(challenge, "s")
    assert "client_id=my-client" in url
    assert emu.approve(url)["state"] == "s"
    url = url.replace("my-client", DEFAULT_CLIENT_ID)
    assert client.get(url, follow_redirects=False).status_code == 400


def test_stats_counters_and_reset(emu, client):
    tok = login(emu, client)
    refresh(client, tok["refresh_token"])
    refresh(client, tok["refresh_token"])  # replay
    client.get("/api/oauth/profile", headers=bearer(tok["access_token"]))
    client.post("/v1/messages", json={"messages": []}, headers=bearer(tok["access_token"], beta=True))
    st = client.get("/_emulator/stats").json()
    expected = {
        "authorize_requests": 1,
        "exchange_requests": 1,
        "exchange_ok": 1,
        "refresh_requests": 2,
        "refresh_ok": 1,
        "refresh_replays": 1,
        "profile_requests": 1,
        "messages_requests": 1,
        "faults_served": 0,
        "active_refresh_tokens": 0,  # the replay revoked the family
    }
    assert {k: st[k] for k in expected} == expected
    assert emu.stats() == st

    client.post("/_emulator/config", json={"latency_ms": 5, "omit_refresh_token": True})
    emu.state.add_fault("any", 500)
    r = client.post("/_emulator/reset")
    assert r.status_code == 200
    st = client.get("/_emulator/stats").json()
    assert all(v == 0 for v in st.values()), st
    cfg = client.get("/_emulator/config").json()
    assert cfg["latency_ms"] == 0 and cfg["omit_refresh_token"] is False and cfg["family_revocation"] is True
    assert_invalid_grant(refresh(client, tok["refresh_token"]))  # tokens are gone


# ---------------------------------------------------------------- server mechanics


def test_server_lifecycle_and_shared_state():
    state = EmulatorState(access_ttl=123)
    srv = EmulatorServer(state)
    srv.start()
    try:
        assert srv.port > 0 and srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.state is state
        r = httpx.get(srv.url + "/_emulator/health")
        assert r.json()["emulator"] is True
        state.add_fault("profile", 500)  # from this (non-loop) thread
        assert httpx.get(srv.url + "/api/oauth/profile").status_code == 500
        assert srv.stats()["faults_served"] == 1
        state.reset()
        assert state.get_config()["access_ttl"] == 123  # reset returns to constructor config
    finally:
        srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/_emulator/health")
    assert create_app().state.emulator is not None


@pytest.mark.serial  # measures time: not beside another worker's load
def test_sequential_refresh_throughput(emu, client):
    tok = login(emu, client)
    rt = tok["refresh_token"]
    n = 500
    t = time.perf_counter()
    for _ in range(n):
        r = refresh(client, rt)
        rt = r.json()["refresh_token"]
    rate = n / (time.perf_counter() - t)
    assert rate > 200, f"only {rate:.0f} refreshes/s"  # ~1200/s measured; lenient for loaded CI


def test_main_prints_banner_and_stops_on_ctrl_c():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.emulator", "--port", "0", "--latency-ms", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        lines = []
        base = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"base URL\s+(http://\S+)", line)
            if m:
                base = m.group(1)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "EMULATOR" in text and "NOT Claude" in text, text
        assert base, text

        def healthy() -> bool:
            try:
                return httpx.get(base + "/_emulator/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for_sync(healthy, 5.0, what="the emulator to come up", interval=0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
