"""Long-lived tokens through the CLI: `login --long-lived`, `import env` with CLAUDE_CODE_OAUTH_TOKEN;
they read `active` (long-lived), are never refreshed, and profile calls are skipped for them."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = pytest.mark.e2e


def test_login_long_lived_is_a_year_without_refresh_token_and_never_refreshed(run_cli, emulator, tokens):
    start = run_cli("login", "--json", "--no-browser", "--long-lived", "--user", "ci").json()
    assert parse_qs(urlsplit(start["authorization_url"]).query)["scope"] == ["user:inference"]
    approved = emulator.approve(start["authorization_url"], email="ci@example.com")
    run_cli.secrets.add(approved["code"])
    done = run_cli("callback", approved["pasted"])
    assert done.code == 0, done.err
    assert "long-lived token (never refreshed) expires in 364d 23h" in done.out
    record = tokens.get("ci")
    assert record.refresh_token is None and record.scopes == ["user:inference"]

    status = run_cli("status", "--user", "ci")
    assert status.code == 0
    assert status.out.splitlines()[0].startswith("ci: active (long-lived), expires in 364d")
    assert run_cli("status", "--user", "ci", "--json").json()["long_lived"] is True
    assert any(line.startswith("ci") and "active long-lived" in line for line in run_cli("users").out.splitlines())

    # inside the refresh buffer: still served as it is, never refreshed
    tokens.rewrite("ci", expires_at=time.time() + 120)
    refreshes = emulator.state.stats()["refresh_requests"]
    assert run_cli("token", "--user", "ci").code == 0
    assert run_cli("refresher", "--once").code == 0
    refused = run_cli("refresh", "--user", "ci")
    assert refused.code == 1
    assert refused.err_lines == ["error: user 'ci' holds a long-lived token, which is never refreshed; run: "
                                 "claude-console login --user ci --long-lived, when it expires"]
    assert emulator.state.stats()["refresh_requests"] == refreshes
    tokens.rewrite("ci", expires_at=time.time() - 1)
    assert run_cli("status", "--user", "ci", "--json").json()["status"] == "expired"


def test_import_env_reads_a_setup_token(run_cli, tokens):
    token = "sk-ant-oat01-" + "s" * 90
    result = run_cli("import", "env", "--user", "bot", env={"CLAUDE_CODE_OAUTH_TOKEN": token})
    assert result.code == 0, result.err
    assert "Imported user 'bot' from CLAUDE_CODE_OAUTH_TOKEN: active (long-lived, never refreshed)" in result.out
    assert "taken as a year from now" in result.out
    record = tokens.get("bot")
    assert record.access_token == token and record.refresh_token is None and record.long_lived
    assert 364 * 86400 < record.expires_at - time.time() <= 365 * 86400

    result = run_cli("import", "env", "--user", "bot2", "--expires-at", "2031-01-02T03:04:05Z",
                     env={"CLAUDE_CODE_OAUTH_TOKEN": token})
    assert result.code == 0, result.err
    assert tokens.get("bot2").expires_at == 1925089445.0
    bad = run_cli("import", "env", "--user", "bot3", "--expires-at", "soon", env={"CLAUDE_CODE_OAUTH_TOKEN": token})
    assert bad.code == 2 and "Traceback" not in bad.err
    assert bad.err_lines == ["error: --expires-at 'soon' is not a time; give seconds since the epoch or an "
                             "ISO-8601 time, e.g. 2027-12-01T00:00:00Z"]
    assert tokens.get("bot3") is None


async def test_profile_is_skipped_for_a_long_lived_token(service, emulator):
    from console.errors import ConsoleError

    start = await service.start_login("ll", long_lived=True)
    approved = emulator.approve(start.authorization_url)
    await service.complete_login(approved["pasted"])
    profiles = emulator.state.stats()["profile_requests"]
    with pytest.raises(ConsoleError, match="long-lived token .* profile and usage calls are skipped"):
        await service.profile("ll")
    assert emulator.state.stats()["profile_requests"] == profiles
