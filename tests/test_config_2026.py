"""The 2026 wire settings: defaults are the newest hosts and Claude Code's agent; the old host warns."""

from __future__ import annotations

import pytest

from console.config import load_settings
from console.errors import ConfigError


def test_defaults_are_the_newest_hosts_and_claude_codes_wire():
    s = load_settings(env={})
    assert s.authorize_url == "https://claude.com/cai/oauth/authorize"
    assert s.token_url == "https://platform.claude.com/v1/oauth/token"
    assert s.redirect_uri == "https://platform.claude.com/oauth/code/callback"
    assert (s.user_agent, s.beta_header, s.refresh_scope) == ("axios/1.15.2", "oauth-2025-04-20", False)
    assert s.warnings() == []


def test_yaml_and_environment_keys(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("claude_oauth:\n  user_agent: claude-cli/2.1.200\n  refresh_scope: true\n"
                      "  beta_headers: [oauth-2025-04-20, claude-code-20250219]\n")
    s = load_settings(config, env={})
    assert (s.user_agent, s.refresh_scope) == ("claude-cli/2.1.200", True)
    assert s.beta_header == "oauth-2025-04-20,claude-code-20250219"
    s = load_settings(config, env={"CLAUDE_OAUTH_USER_AGENT": "x/1", "CLAUDE_OAUTH_REFRESH_SCOPE": "off"})
    assert (s.user_agent, s.refresh_scope) == ("x/1", False)
    with pytest.raises(ConfigError, match="CLAUDE_OAUTH_REFRESH_SCOPE: expected true or false"):
        load_settings(env={"CLAUDE_OAUTH_REFRESH_SCOPE": "maybe"})


def test_the_old_console_host_warns_with_the_current_one():
    s = load_settings(env={"CLAUDE_OAUTH_TOKEN_URL": "https://console.anthropic.com/v1/oauth/token",
                           "CLAUDE_OAUTH_REDIRECT_URI": "https://console.anthropic.com/oauth/code/callback"})
    assert s.warnings() == [
        "claude_oauth.token_url names console.anthropic.com, which Claude no longer serves OAuth on; the current "
        "host is platform.claude.com (e.g. https://platform.claude.com/v1/oauth/token)",
        "claude_oauth.redirect_uri names console.anthropic.com, which Claude no longer serves OAuth on; the "
        "current host is platform.claude.com (e.g. https://platform.claude.com/oauth/code/callback)"]
