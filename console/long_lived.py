"""Long-lived tokens (``claude setup-token``): a year of inference, no refresh token.

They are never refreshed; their status is ``active`` (shown as long-lived) until they expire.
"""

from __future__ import annotations

import time

from .errors import UsageError
from .oauth import LONG_LIVED_SCOPE, LONG_LIVED_SECONDS
from .tokens import TokenRecord


def setup_token_record(user_id: str, token: str, expires_at: float | None = None) -> TokenRecord:
    """A record for a setup token from ``CLAUDE_CODE_OAUTH_TOKEN``. Its expiry is not in the token:
    without ``expires_at`` it is taken as a year from now, as setup tokens are issued."""
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise UsageError("CLAUDE_CODE_OAUTH_TOKEN does not hold a token",
                         hint="set it to the sk-ant-oat01-… string `claude setup-token` printed")
    return TokenRecord(user_id=user_id, access_token=token, refresh_token=None,
                       expires_at=expires_at if expires_at is not None else time.time() + LONG_LIVED_SECONDS,
                       scopes=[LONG_LIVED_SCOPE])
