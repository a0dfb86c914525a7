"""The wire Claude expects in 2026 and the refusals met on API calls, in process against the emulator.
(The token-call rows are driven through the CLI in tests/e2e/test_refusals_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from console.config import load_settings
from console.emulator.state import CLAUDE_CODE_ONLY, ORG_DISABLED
from console.errors import AccountBlocked, NeedsLogin, OAuthError
from console.oauth import OAuthClient
from console.refusals import REFUSALS, Answer, classify, markdown_table
from console.service import AuthService
from console.tokens import Status

README = Path(__file__).resolve().parents[1] / "README.md"


def recording_client(seen: list):
    async def hook(request):
        seen.append(request)
    return httpx.AsyncClient(event_hooks={"request": [hook]}, timeout=10)


async def test_every_provider_call_carries_the_agent_version_and_beta_never_an_api_key(settings, login, emulator):
    seen: list[httpx.Request] = []
    service = AuthService(settings, oauth=OAuthClient(settings, http=recording_client(seen)))
    try:
        await login(service, "alice")
        await service.refresh("alice")
        await service.profile("alice")
    finally:
        await service.aclose()
    assert len(seen) == 3
    for request in seen:
        assert request.headers["user-agent"] == "axios/1.15.2"
        assert "x-api-key" not in request.headers
    api = seen[-1]
    assert api.headers["anthropic-version"] == "2023-06-01"
    assert api.headers["anthropic-beta"] == "oauth-2025-04-20"
    assert api.headers["authorization"].startswith("Bearer sk-ant-oat01-")


async def test_refresh_sends_the_stored_scopes_only_when_refresh_scope_is_on(console_env, login, emulator,
                                                                             monkeypatch):
    import json

    for on in (False, True):
        if on:
            monkeypatch.setenv("CLAUDE_OAUTH_REFRESH_SCOPE", "true")
        settings = load_settings()
        seen: list[httpx.Request] = []
        service = AuthService(settings, oauth=OAuthClient(settings, http=recording_client(seen)))
        try:
            await login(service, "alice")
            await service.refresh("alice")
        finally:
            await service.aclose()
        body = json.loads(seen[-1].content)
        assert ("scope" in body) is on
        if on:
            assert body["scope"].split() == (await AuthService(settings).get_record("alice")).scopes


def test_configured_agent_and_beta_list(console_env):
    settings = load_settings(env={"CLAUDE_OAUTH_USER_AGENT": "claude-cli/2.1.200 (external, cli)",
                                  "CLAUDE_OAUTH_BETA_HEADERS": "oauth-2025-04-20, claude-code-20250219"})
    headers = OAuthClient(settings).api_headers("t")
    assert headers["user-agent"] == "claude-cli/2.1.200 (external, cli)"
    assert headers["anthropic-beta"] == "oauth-2025-04-20,claude-code-20250219"
    assert load_settings(env={}).refresh_scope is False


async def test_a_disabled_organization_on_an_api_call_marks_the_record(service, login, emulator):
    await login(service, "alice")
    emulator.state.set_org_state("alice@example.com", "disabled")
    with pytest.raises(AccountBlocked) as caught:
        await service.call_api("GET", "/api/oauth/usage", "alice")
    assert str(caught.value).startswith("Claude says the organization of user 'alice' has been disabled")
    assert ORG_DISABLED in str(caught.value)
    service.forget()
    record = await service.get_record("alice")
    assert service.status_of(record) is Status.ACCOUNT_DISABLED and record.refresh_token
    with pytest.raises(AccountBlocked):  # and token use stops asking Claude
        await service.get_access_token("alice")


async def test_claude_code_only_and_missing_beta_are_named(service, login, emulator):
    await login(service, "alice")
    emulator.state.configure(claude_code_only=True)
    with pytest.raises(OAuthError) as caught:
        await service.call_api("POST", "/v1/messages", "alice", json={"model": "m", "messages": []})
    assert caught.value.kind == "claude_code_only"
    assert str(caught.value) == (
        f"Claude says the token of user 'alice' may only be used by Claude Code (HTTP 400 invalid_request_error "
        f"\"{CLAUDE_CODE_ONLY}\"); the terms allow subscription tokens in Claude Code only: run it with "
        "claude-console exec --user alice -- claude")
    emulator.state.configure(claude_code_only=False)
    with pytest.raises(OAuthError) as caught:
        await service.call_api("POST", "/v1/messages", "alice", json={"model": "m", "messages": []},
                               headers={"anthropic-beta": "other-beta"})
    assert caught.value.kind == "beta_missing" and caught.value.exit_code == 2
    assert emulator.state.stats()["refresh_requests"] == 0  # a refresh would not have helped


async def test_an_expired_token_on_the_api_is_refreshed_once(service, login, emulator):
    record = await login(service, "alice")
    emulator.state.expire(record.access_token)
    response = await service.call_api("GET", "/api/oauth/profile", "alice")
    assert response.status_code == 200
    assert (await service.get_record("alice")).refresh_token != record.refresh_token  # rotated


def test_classify_matches_each_row_to_its_own_answer():
    answers = {
        "cloudflare": Answer("refresh", 403, html=True),
        "moved": Answer("refresh", 404, "not_found_error", "Not found"),
        "redirect_uri": Answer("exchange", 400, "invalid_grant", "Invalid 'redirect_uri' in request"),
        "bad_code": Answer("exchange", 400, "invalid_grant", "Invalid 'code' in request."),
        "refresh_rejected": Answer("refresh", 400, "invalid_grant", "Refresh token not found or invalid"),
        "invalid_scope": Answer("refresh", 400, "invalid_scope", "x"),
        "account_disabled": Answer("refresh", 400, "invalid_request_error", ORG_DISABLED),
        "oauth_not_allowed": Answer("api", 403, "permission_error",
                                    "OAuth authentication is currently not allowed for this organization."),
        "token_expired": Answer("api", 401, "authentication_error", "OAuth token has expired."),
        "beta_missing": Answer("api", 401, "authentication_error", "OAuth authentication is currently not supported."),
        "claude_code_only": Answer("api", 400, "invalid_request_error", CLAUDE_CODE_ONLY),
        "rate_limited": Answer("refresh", 429, "rate_limit_error", "Rate limited. Please try again later."),
    }
    assert set(answers) == {r.kind for r in REFUSALS}
    for kind, answer in answers.items():
        assert classify(answer).kind == kind
    assert classify(Answer("api", 403, "permission_error", "Permission denied")) is None


def test_the_readme_shows_the_table_the_code_uses():
    text = README.read_text()
    for row in markdown_table().splitlines():
        assert row in text, f"README lacks the refusal row: {row}"
