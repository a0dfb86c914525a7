"""Seed path ``litellm.proxy.auth.claude_auth_service`` -> ``console.claude_auth_service``."""

from .sdk.seed import (ClaudeAuthService, ensure_authenticated, get_access_token, get_auth_service,  # noqa: F401
                       get_headers, quick_authenticate)
