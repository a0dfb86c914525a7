"""`claude-console doctor`: one line per check, ✓ or ✗ with the fix; exit 0 only when all pass."""

from __future__ import annotations

import pytest

from console.crypto import generate_key

pytestmark = pytest.mark.e2e


def lines(result) -> list[str]:
    assert "Traceback" not in result.err, result.err
    return result.out.splitlines()


def test_all_pass_against_the_emulator(run_cli, cli_login, emulator):
    cli_login("alice")
    result = run_cli("doctor", "--user", "alice")
    shown = lines(result)
    assert result.code == 0, result.out
    assert all(line.startswith("✓ ") for line in shown)
    names = [line[2:].split(": ")[0] for line in shown]
    assert names[:2] == ["configuration", "storage file"] and "encryption key" in names
    assert any(n.startswith("network 127.0.0.1:") for n in names)
    assert "token endpoint" in names and "clock" in names and names[-1] == "profile of alice"
    token_line = next(line for line in shown if line.startswith("✓ token endpoint"))
    assert "speaks OAuth (a test refresh got HTTP 400 invalid_grant" in token_line
    assert shown[-1] == "✓ profile of alice: alice@example.com (alice@example.com's Organization)"
    assert any(line.startswith("✓ encryption key") and "1 stored user(s)" in line for line in shown)

    checks = run_cli("doctor", "--json").json()
    assert {"name", "ok", "detail", "fix"} <= set(checks[0]) and all(c["ok"] for c in checks)


def test_cloudflare_and_a_moved_endpoint_fail_with_the_fix(run_cli, emulator):
    emulator.state.configure(blocked_user_agents=["axios"])
    result = run_cli("doctor")
    assert result.code == 1
    failed = [line for line in lines(result) if line.startswith("✗")]
    assert failed == ["✗ token endpoint: a test refresh refused: the token host refused this client's signature "
                      "(Cloudflare 1010, HTTP 403); set CLAUDE_OAUTH_USER_AGENT (claude_oauth.user_agent, now "
                      "'axios/1.15.2'); stored tokens are unchanged, retry after that"]
    emulator.state.configure(blocked_user_agents=[], token_moved=True)
    result = run_cli("doctor")
    assert result.code == 1
    assert any(line.startswith("✗ token endpoint: a test refresh failed: the token endpoint ") and
               "answered 404 (not_found_error): it has moved" in line for line in lines(result))


def test_a_wrong_key_an_unknown_key_and_a_moved_host_are_named(run_cli, cli_login, emulator, tmp_path):
    key = generate_key()
    cli_login("alice", env={"CLAUDE_TOKEN_ENCRYPTION_KEY": key})
    result = run_cli("doctor", env={"CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()})
    assert result.code == 1
    assert any(line.startswith("✗ encryption key: ") for line in lines(result))

    config = tmp_path / "c.yaml"
    config.write_text("claude_oauth:\n  refresh_scopes: true\n  user_agent: axios/1.15.2\n")
    result = run_cli("doctor", "--config", str(config), env={"CLAUDE_TOKEN_ENCRYPTION_KEY": key})
    assert result.code == 1
    assert lines(result) == [f"✗ configuration: {config}: unknown key claude_oauth.refresh_scopes; did you mean "
                             "refresh_scope?; the README's Configuration section lists every key"]

    config.write_text("claude_oauth:\n  refresh_buffer: soon\n")
    result = run_cli("doctor", "--config", str(config))
    assert result.code == 1
    assert lines(result) == [f"✗ configuration: {config}: claude_oauth.refresh_buffer: expected a number of "
                             "seconds, got 'soon'; fix the file or variable it names"]
