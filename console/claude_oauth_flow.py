"""Seed path ``litellm.proxy.auth.claude_oauth_flow`` -> ``console.claude_oauth_flow``."""

from .sdk.seed import ClaudeOAuthFlow  # noqa: F401
