"""claude-console: Claude OAuth tokens for operators, scripts and services.

The SDK names load on first use, so ``import console`` (and the CLI) stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "AuthService": "console.service",
    "load_settings": "console.config",
    "Settings": "console.config",
    "TokenRecord": "console.tokens",
    "Status": "console.tokens",
    "ClaudeAuthService": "console.sdk.seed",
    "ClaudeOAuthFlow": "console.sdk.seed",
    "ClaudeOAuthHandler": "console.sdk.seed",
    "get_auth_service": "console.sdk.seed",
    "get_access_token": "console.sdk.seed",
    "ensure_authenticated": "console.sdk.seed",
    "get_headers": "console.sdk.seed",
    "quick_authenticate": "console.sdk.seed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'console' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
