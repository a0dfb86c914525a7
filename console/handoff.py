"""Tokens handed to Claude Code: the console stays the one refresher of each account.

A child process gets a valid access token in ``CLAUDE_CODE_OAUTH_TOKEN`` and nothing it could
refresh or decrypt with, so Claude Code instances never race each other over a rotation.
"""

from __future__ import annotations

from typing import Mapping

CHILD_TOKEN_VARIABLE = "CLAUDE_CODE_OAUTH_TOKEN"
# The console's own secrets: a refresh token, the key that decrypts stored ones, the API's key.
WITHHELD = ("CLAUDE_REFRESH_TOKEN", "CLAUDE_ACCESS_TOKEN", "CLAUDE_EXPIRES_AT", "CLAUDE_TOKEN_ENCRYPTION_KEY",
            "LITELLM_MASTER_KEY")


def child_environment(parent: Mapping[str, str], access_token: str) -> dict[str, str]:
    """The parent's environment with the access token set and the console's secrets removed."""
    env = {k: v for k, v in parent.items() if k not in WITHHELD}
    env[CHILD_TOKEN_VARIABLE] = access_token
    return env
