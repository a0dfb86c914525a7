"""The emulator answers as Claude did in late 2026: Cloudflare's 1010 page, the moved token host,
disabled and OAuth-refusing organizations, setup-token exchanges, loopback redirects, both
profile shapes and the Claude-Code-only refusal. Each behaviour has a control knob."""

from __future__ import annotations

import secrets

import httpx
import pytest

from console.emulator.state import (BAD_REDIRECT, CLAUDE_CODE_ONLY, DEFAULT_CLIENT_ID, LONG_LIVED_TTL,
                                    ORG_DISABLED, OAUTH_NOT_ALLOWED)

BETA = {"anthropic-beta": "oauth-2025-04-20"}


def pkce() -> tuple[str, str]:
    from console.oauth import challenge_for, new_verifier

    verifier = new_verifier()
    return verifier, challenge_for(verifier)


def bearer(token: str, beta: bool = False) -> dict:
    return {"authorization": f"Bearer {token}", **(BETA if beta else {})}


def login(emu, client, email=None):
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(32)
    approved = emu.approve(emu.build_authorize_url(challenge, state), email=email)
    r = client.post("/v1/oauth/token", json={
        "grant_type": "authorization_code", "code": approved["code"], "state": state,
        "client_id": DEFAULT_CLIENT_ID, "redirect_uri": emu.redirect_uri, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    return r.json()


def refresh(client, token):
    return client.post("/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": token,
                                                 "client_id": DEFAULT_CLIENT_ID})


@pytest.fixture
def client(emulator):
    with httpx.Client(base_url=emulator.url, timeout=10, headers={"user-agent": "axios/1.15.2"}) as c:
        yield c


def control(emulator, path, body):
    r = httpx.post(f"{emulator.url}/_emulator/{path}", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_cloudflare_refuses_configured_agents_with_an_html_1010_page(emulator, client):
    tokens = login(emulator, client)
    control(emulator, "config", {"blocked_user_agents": ["Python-urllib", "python-httpx"]})
    r = client.post("/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                             "client_id": DEFAULT_CLIENT_ID},
                    headers={"user-agent": "Python-urllib/3.11"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "error code: 1010" in r.text and "Access denied" in r.text
    # the refused call spent nothing: the same refresh token still works with a good agent
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_a_moved_token_host_answers_404_not_found(emulator, client):
    control(emulator, "config", {"token_moved": True})
    r = refresh(client, "sk-ant-ort01-whatever")
    assert r.status_code == 404
    assert r.json() == {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}


@pytest.mark.parametrize("org_state, status, kind, message", [
    ("disabled", 400, "invalid_request_error", ORG_DISABLED),
    ("not_allowed", 403, "permission_error", OAUTH_NOT_ALLOWED),
])
def test_refused_organizations_on_refresh_and_api(emulator, client, org_state, status, kind, message):
    tokens = login(emulator, client, email="org@example.com")
    control(emulator, "org", {"email": "org@example.com", "state": org_state})
    for r in (refresh(client, tokens["refresh_token"]),
              client.get("/api/oauth/profile", headers=bearer(tokens["access_token"])),
              client.post("/v1/messages", headers=bearer(tokens["access_token"], beta=True),
                          json={"model": "m", "messages": []})):
        assert r.status_code == status
        assert r.json() == {"type": "error", "error": {"type": kind, "message": message}}
    control(emulator, "org", {"email": "org@example.com", "state": "active"})
    assert refresh(client, tokens["refresh_token"]).status_code == 200  # the refusal spent nothing


def test_setup_token_exchange_is_a_year_of_inference_without_refresh_token(emulator, client):
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(32)
    approved = emulator.approve(emulator.build_authorize_url(challenge, state))
    r = client.post("/v1/oauth/token", json={
        "grant_type": "authorization_code", "code": approved["code"], "state": state,
        "client_id": DEFAULT_CLIENT_ID, "redirect_uri": emulator.redirect_uri, "code_verifier": verifier,
        "expires_in": LONG_LIVED_TTL, "scope": "user:inference"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["expires_in"] == 31536000 and answer["scope"] == "user:inference"
    assert "refresh_token" not in answer
    # profile and usage need user:profile, which a setup token lacks
    for path in ("/api/oauth/profile", "/api/oauth/usage"):
        r = client.get(path, headers=bearer(answer["access_token"], beta=True))
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = client.post("/v1/messages", headers=bearer(answer["access_token"], beta=True),
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200


def test_loopback_redirect_binds_the_code(emulator, client):
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(32)
    loopback = "http://localhost:54545/callback"
    url = emulator.build_authorize_url(challenge, state, redirect_uri=loopback)
    approved = emulator.approve(url)
    assert approved["callback_url"].startswith(loopback + "?code=")
    body = {"grant_type": "authorization_code", "code": approved["code"], "state": state,
            "client_id": DEFAULT_CLIENT_ID, "redirect_uri": "http://localhost:54546/callback",
            "code_verifier": verifier}
    r = client.post("/v1/oauth/token", json=body)
    assert r.status_code == 400 and r.json() == {"error": "invalid_grant", "error_description": BAD_REDIRECT}
    r = client.post("/v1/oauth/token", json={**body, "redirect_uri": loopback})
    assert r.status_code == 200


@pytest.mark.parametrize("shape", ["email", "email_address"])
def test_both_profile_shapes(emulator, client, shape):
    tokens = login(emulator, client, email="shape@example.com")
    control(emulator, "config", {"profile_shape": shape})
    profile = client.get("/api/oauth/profile", headers=bearer(tokens["access_token"])).json()
    assert profile["account"][shape] == "shape@example.com"
    other = "email_address" if shape == "email" else "email"
    assert other not in profile["account"]
    if shape == "email":
        assert profile["organization"]["organization_type"] == "claude_max"


def test_claude_code_only_refusal(emulator, client):
    tokens = login(emulator, client)
    control(emulator, "config", {"claude_code_only": True})
    r = client.post("/v1/messages", headers=bearer(tokens["access_token"], beta=True),
                    json={"model": "m", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["message"] == CLAUDE_CODE_ONLY


def test_knobs_reject_bad_values(emulator):
    for body in ({"profile_shape": "mail"}, {"blocked_user_agents": "axios"}, {"blocked_user_agents": [""]}):
        assert httpx.post(f"{emulator.url}/_emulator/config", json=body).status_code == 400
    assert httpx.post(f"{emulator.url}/_emulator/org", json={"email": "a@b", "state": "gone"}).status_code == 400
    assert BETA  # the beta header the API expects is the one the console sends
