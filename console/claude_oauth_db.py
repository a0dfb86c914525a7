"""Seed path ``litellm.proxy.auth.claude_oauth_db`` -> ``console.claude_oauth_db``."""

from .sdk.claude_oauth_db import ClaudeOAuthDatabase  # noqa: F401
