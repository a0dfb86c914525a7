"""Background-refresh claims on PostgreSQL: the due rows, leased so other replicas skip them.

The rule itself is ``store/refresh_rule.py``; the statement below is built from its parts, in
the same order and under the same names.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Awaitable, Callable

from ..refresh_rule import MAX_DOUBLINGS
from .sql import TOKENS

# $1 window s, $2 keepalive s, $3 backoff base s, $4 backoff cap s, $5 limit, $6 lease s, $7 owner.
REFRESHABLE = "refresh_token_encrypted IS NOT NULL AND NOT needs_login"
EXPIRING_OR_IDLE = """(expires_at <= now() + make_interval(secs => $1::float8)
           OR COALESCE(last_refresh_at, created_at) <= now() - make_interval(secs => $2::float8))"""
BACKOFF = f"""LEAST($4::float8, $3::float8 * power(2::float8, LEAST(refresh_failures - 1, {MAX_DOUBLINGS})))"""
NOT_BACKING_OFF = f"""(refresh_failures = 0 OR last_refresh_error_at IS NULL
           OR last_refresh_error_at + make_interval(secs => {BACKOFF}) <= now())"""
NOT_LEASED = "(refresh_claimed_until IS NULL OR refresh_claimed_until < now())"
CLAIM_DUE = f"""WITH due AS (
    SELECT user_id FROM {TOKENS}
    WHERE {REFRESHABLE}
      AND {NOT_LEASED}
      AND {EXPIRING_OR_IDLE}
      AND {NOT_BACKING_OFF}
    ORDER BY expires_at
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE {TOKENS} t SET refresh_claimed_until = now() + make_interval(secs => $6::float8),
    refresh_claimed_by = $7
FROM due WHERE t.user_id = due.user_id
RETURNING t.user_id, t.version"""


def default_owner() -> str:
    """Who holds a refresh claim: host and process, shown in the table while it lasts."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DueClaims:
    """``claim_due`` for ``PostgresTier``: one statement, leased rows."""

    attempt: Callable[..., Awaitable[Any]]

    async def claim_due(self, *, limit: int, window: float, keepalive: float, lease: float, owner: str,
                        backoff_base: float, backoff_cap: float) -> list[tuple[str, int]]:
        """Claim up to ``limit`` users due for a refresh: ``(user_id, version)`` each."""
        rows = await self.attempt(lambda conn: conn.fetch(
            CLAIM_DUE, float(window), float(keepalive), float(backoff_base), float(backoff_cap),
            int(limit), float(lease), owner))
        return [(r[0], r[1]) for r in rows]
