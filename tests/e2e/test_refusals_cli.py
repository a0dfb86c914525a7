"""Every row of the refusal table (console/refusals.py) through the CLI, as an operator meets it:
the exact line, the exit code, the stored tokens as the table says, and no traceback."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from console.config import TOKEN_URL
from console.emulator.state import ORG_DISABLED, OAUTH_NOT_ALLOWED

pytestmark = pytest.mark.e2e


def one_line(result) -> str:
    assert "Traceback" not in result.err, result.err
    lines = result.err_lines
    assert len(lines) == 1, f"expected one error line, got:\n{result.err}"
    return lines[0]


def tokens_of(record):
    return (record.access_token, record.refresh_token, record.expires_at)


def test_cloudflare_1010_names_the_user_agent_and_keeps_the_tokens(run_cli, cli_login, emulator, tokens):
    cli_login("alice")
    before = tokens.get("alice")
    emulator.state.configure(blocked_user_agents=["python-httpx", "axios"])
    result = run_cli("refresh", "--user", "alice")
    assert result.code == 2
    assert one_line(result) == (
        "error: token refresh refused: the token host refused this client's signature (Cloudflare 1010, "
        "HTTP 403); set CLAUDE_OAUTH_USER_AGENT (claude_oauth.user_agent, now 'axios/1.15.2'); stored tokens "
        "are unchanged, retry after that")
    after = tokens.get("alice")
    assert tokens_of(after) == tokens_of(before) and not after.needs_login
    assert run_cli("status", "--user", "alice").code == 0
    # the fix the line names works: another agent, and the same refresh token refreshes
    retried = run_cli("refresh", "--user", "alice", env={"CLAUDE_OAUTH_USER_AGENT": "claude-cli/2.1.200"})
    assert retried.code == 0, retried.err
    assert tokens.get("alice").refresh_token != before.refresh_token


def test_a_moved_token_endpoint_is_named_with_the_current_one(run_cli, cli_login, emulator, tokens, console_env):
    cli_login("alice")
    before = tokens.get("alice")
    emulator.state.configure(token_moved=True)
    result = run_cli("refresh", "--user", "alice")
    assert result.code == 2
    assert one_line(result) == (
        f"error: token refresh failed: the token endpoint {console_env['CLAUDE_OAUTH_TOKEN_URL']} answered 404 "
        f"(not_found_error): it has moved; the current one is {TOKEN_URL}: set claude_oauth.token_url "
        "(CLAUDE_OAUTH_TOKEN_URL); stored tokens are unchanged")
    assert tokens_of(tokens.get("alice")) == tokens_of(before)


def test_the_old_host_in_the_configuration_gets_a_warning_at_start(run_cli):
    result = run_cli("status", env={"CLAUDE_OAUTH_TOKEN_URL": "https://console.anthropic.com/v1/oauth/token"})
    assert result.code == 1  # not logged in; the warning comes first
    assert ("warning: claude_oauth.token_url names console.anthropic.com, which Claude no longer serves OAuth "
            f"on; the current host is platform.claude.com (e.g. {TOKEN_URL})") in result.err.splitlines()
    assert "Traceback" not in result.err


def test_a_wrong_code_leaves_the_login_open(run_cli, emulator, tokens):
    start = run_cli("login", "--json", "--no-browser", "--user", "alice").json()
    result = run_cli("callback", f"not-a-real-code#{start['state']}")
    assert result.code == 1
    assert one_line(result) == (
        "error: the code was rejected (HTTP 400 invalid_grant \"Invalid 'code' in request.\"): it is wrong, "
        "used or expired; the login stays open: open its URL again and paste the new code, or run: "
        "claude-console login --user alice")
    assert tokens.get("alice") is None
    approved = emulator.approve(start["authorization_url"], email="alice@example.com")
    run_cli.secrets.add(approved["code"])
    assert run_cli("callback", approved["pasted"]).code == 0


def test_a_code_bound_to_another_redirect_uri_names_the_configuration(run_cli, emulator, tokens):
    start = run_cli("login", "--json", "--no-browser", "--user", "alice").json()
    parts = urlsplit(start["authorization_url"])
    query = dict(parse_qsl(parts.query))
    query["redirect_uri"] = "http://localhost:51234/callback"  # the browser came back elsewhere
    approved = emulator.approve(parts._replace(query=urlencode(query)).geturl(), email="alice@example.com")
    run_cli.secrets.add(approved["code"])
    result = run_cli("callback", approved["pasted"])
    assert result.code == 2
    assert one_line(result) == (
        "error: the code was rejected (HTTP 400 invalid_grant \"Invalid 'redirect_uri' in request\"): the "
        "redirect URI differs from the one this login started with; the code is bound to its login's "
        "redirect URI: check claude_oauth.redirect_uri (CLAUDE_OAUTH_REDIRECT_URI) and --redirect-uri, then "
        "log in again; stored tokens are unchanged")
    assert tokens.get("alice") is None


def test_a_spent_refresh_token_marks_needs_login(run_cli, cli_login, emulator, tokens):
    cli_login("alice")
    before = tokens.get("alice")
    emulator.state.revoke(refresh_token=before.refresh_token)
    result = run_cli("refresh", "--user", "alice")
    assert result.code == 1
    assert one_line(result) == (
        "error: user 'alice' must log in again: the provider rejected the refresh token (HTTP 400 invalid_grant "
        "\"Refresh token not found or invalid\"): it was spent or revoked; run: claude-console login --user alice")
    after = tokens.get("alice")
    assert after.needs_login and tokens_of(after) == tokens_of(before)
    assert run_cli("status", "--user", "alice", "--json").json()["status"] == "needs_login"


def test_invalid_scope_names_refresh_scope(run_cli, cli_login, emulator, tokens):
    cli_login("alice")
    before = tokens.rewrite("alice", scopes=["user:inference", "user:not-granted"])
    result = run_cli("refresh", "--user", "alice", env={"CLAUDE_OAUTH_REFRESH_SCOPE": "1"})
    assert result.code == 2
    assert one_line(result) == (
        "error: token refresh rejected (HTTP 400 invalid_scope \"Scope not granted: user:not-granted\"): the "
        "provider refused the scopes sent with the refresh; turn claude_oauth.refresh_scope off "
        "(CLAUDE_OAUTH_REFRESH_SCOPE=0); stored tokens are unchanged")
    assert tokens_of(tokens.get("alice")) == tokens_of(before)
    # off (the default), the scope is not sent and the same token refreshes
    assert run_cli("refresh", "--user", "alice").code == 0


@pytest.mark.parametrize("org_state, status, line", [
    ("disabled", "account_disabled",
     f"error: Claude says the organization of user 'alice' has been disabled (HTTP 400 invalid_request_error "
     f"\"{ORG_DISABLED}\"); the tokens are kept and not refreshed; once it is enabled again run: claude-console "
     "refresh --user alice (or log in again)"),
    ("not_allowed", "oauth_not_allowed",
     f"error: Claude does not allow OAuth for the organization of user 'alice' (HTTP 403 permission_error "
     f"\"{OAUTH_NOT_ALLOWED}\"); an organization admin must allow it; the tokens are kept and not refreshed; "
     "then run: claude-console refresh --user alice (or log in again)"),
])
def test_a_refused_organization_gets_its_own_status(run_cli, cli_login, emulator, tokens, org_state, status, line):
    cli_login("alice")
    cli_login("bob")
    before = tokens.get("alice")
    emulator.state.set_org_state("alice@example.com", org_state)
    result = run_cli("refresh", "--user", "alice")
    assert result.code == 1
    assert one_line(result) == line
    after = tokens.get("alice")
    assert tokens_of(after) == tokens_of(before)

    shown = run_cli("status", "--user", "alice")
    assert shown.code == 1
    assert shown.out.splitlines()[0].startswith(f"alice: {status.replace('_', ' ')}, expires in")
    assert "Claude refused the organization" in shown.out
    assert run_cli("status", "--user", "alice", "--json").json()["status"] == status
    assert any(row.startswith("alice") and status in row for row in run_cli("users").out.splitlines())

    # nothing automatic asks Claude again: token use and the refresher leave it alone
    refreshes = emulator.state.stats()["refresh_requests"]
    used = run_cli("token", "--user", "alice")
    assert used.code == 1 and one_line(used).startswith(f"error: user 'alice' is {status}: Claude ")
    tokens.expire("alice")
    tokens.expire("bob")
    swept = run_cli("refresher", "--once")
    assert emulator.state.stats()["refresh_requests"] == refreshes + 1  # bob's only
    assert tokens.get("bob").refresh_token != before.refresh_token and "Traceback" not in swept.err

    # the operator acts: Claude allows the organization again, refresh --user clears the status
    emulator.state.set_org_state("alice@example.com", "active")
    cleared = run_cli("refresh", "--user", "alice")
    assert cleared.code == 0, cleared.err
    assert run_cli("status", "--user", "alice", "--json").json()["status"] == "active"


def test_login_again_clears_a_refused_organization(run_cli, cli_login, emulator, tokens):
    cli_login("alice")
    emulator.state.set_org_state("alice@example.com", "disabled")
    assert run_cli("refresh", "--user", "alice").code == 1
    emulator.state.set_org_state("alice@example.com", "active")
    cli_login("alice")
    assert run_cli("status", "--user", "alice", "--json").json()["status"] == "active"
