"""Seed path ``litellm.proxy.auth.claude_oauth_handler`` -> ``console.claude_oauth_handler``."""

from .sdk.seed import ClaudeOAuthHandler  # noqa: F401
