"""The HTTP API face: a Starlette app over ``AuthService`` (``claude-console serve``).

Importing this package pulls in Starlette and prometheus-client, so only ``serve`` and
``web`` import it, and only when they run.
"""

from __future__ import annotations

__all__ = ["create_api"]


def __getattr__(name: str):
    if name == "create_api":
        from .app import create_api

        return create_api
    raise AttributeError(f"module 'console.api' has no attribute {name!r}")
