"""When a stored login is due for a background refresh: the one definition of the rule.

A user is due when all three parts hold:

- ``refreshable``: it has a refresh token and does not need a new login;
- ``expiring_or_idle``: its access token expires within ``window`` seconds, or it was not
  refreshed (nor created) for ``keepalive`` seconds;
- ``not_backing_off``: after ``n`` failed refreshes in a row it waits
  ``min(backoff_cap, backoff_base * 2 ** min(n - 1, MAX_DOUBLINGS))`` seconds from the last one.

Due users are taken soonest-expiring first. Every tier answers ``claim_due`` with this rule:
PostgreSQL as one SQL statement built from the same parts (``store/postgres/due.py``), the
other tiers in Python from a listing (``Tier.claim_due``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..tokens import TokenRecord

MAX_DOUBLINGS = 30   # the back-off stops doubling here (and the arithmetic stays finite)


@dataclass(frozen=True)
class RefreshRule:
    window: float          # refresh when the access token expires within this many seconds
    keepalive: float       # ... or when it was not refreshed for this many seconds
    backoff_base: float    # the wait after the first failure, doubled after each further one
    backoff_cap: float     # the longest wait

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed refreshes in a row (0 after none)."""
        if failures <= 0:
            return 0.0
        return min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, MAX_DOUBLINGS))

    def refreshable(self, r: TokenRecord) -> bool:
        return bool(r.refresh_token) and not r.needs_login

    def expiring_or_idle(self, r: TokenRecord, now: float) -> bool:
        return r.expires_at <= now + self.window or (r.last_refresh_at or r.created_at) <= now - self.keepalive

    def not_backing_off(self, r: TokenRecord, now: float) -> bool:
        return not (r.refresh_failures and r.last_refresh_error_at) or \
            now >= r.last_refresh_error_at + self.backoff(r.refresh_failures)

    def is_due(self, r: TokenRecord, now: float) -> bool:
        return self.refreshable(r) and self.expiring_or_idle(r, now) and self.not_backing_off(r, now)

    def pick(self, records: Iterable[TokenRecord], now: float, limit: int) -> list[tuple[str, int]]:
        """``(user, version)`` of up to ``limit`` due records, soonest-expiring first; tokens from
        the environment are never refreshed in the background."""
        due = sorted((r.expires_at, r.user_id, r.version) for r in records
                     if r.source != "env" and self.is_due(r, now))
        return [(uid, version) for _, uid, version in due[:limit]]
