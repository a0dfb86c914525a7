"""The tier interface the hierarchy composes, and the small records that cross it."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator

from ..tokens import TokenRecord

UP, DOWN, NOT_CONFIGURED = "up", "down", "not configured"


@dataclass
class PendingLogin:
    """A login started but not finished: lives ``pending_ttl`` seconds, used once."""

    state: str
    verifier: str
    user_id: str
    redirect_uri: str
    created_at: float
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    # A long-lived login (``login --long-lived``) is marked by a fragment on its redirect URI,
    # which no real redirect URI may carry (RFC 6749 3.1.2), so every tier keeps it as it is.
    LONG_LIVED_MARK = "#long-lived"

    @property
    def long_lived(self) -> bool:
        return self.redirect_uri.endswith(self.LONG_LIVED_MARK)

    @property
    def sent_redirect_uri(self) -> str:
        """The redirect URI as the provider saw it (without the mark)."""
        return self.redirect_uri.removesuffix(self.LONG_LIVED_MARK)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PendingLogin":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class AuditEvent:
    """Who did what to whose token, when. Never holds a token."""

    action: str                 # login, refresh, refresh_failed, logout, import, restore, rotate_key
    user_id: str
    ok: bool = True
    detail: str = ""
    actor: str = ""
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AuditEvent":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class TierHealth:
    name: str
    state: str                  # up, down, not configured
    detail: str = ""
    writable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RotationReport:
    """What ``rotate-key`` did, whichever tier it ran on."""

    key_id: str
    rotated: int = 0             # token rows re-encrypted by this run
    current: int = 0             # token rows already under the first key
    pending_rotated: int = 0     # pending-login verifiers re-encrypted
    raced: int = 0               # rows a concurrent write changed first (already under the first key)
    unreadable: Counter = field(default_factory=Counter)   # key id (or reason) -> rows left as they are
    retired: list[str] = field(default_factory=list)       # configured keys no row needs any more

    @property
    def complete(self) -> bool:
        return not self.unreadable


class Tier:
    """One storage tier. Methods raise ``TierUnavailable`` when the backend is down.

    ``put`` with ``expected_version`` is a compare-and-swap: it raises ``StaleWrite``
    unless the stored version equals it (0 = "must not exist yet"). Every successful
    put returns the record as stored, with its new version.
    """

    name = "tier"
    writable = False

    async def get(self, user_id: str) -> TokenRecord | None:
        raise NotImplementedError

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        """Every user. Without ``secrets`` tokens are not decrypted: they read ``HIDDEN``."""
        raise NotImplementedError

    async def put(self, record: TokenRecord, expected_version: int | None = None) -> TokenRecord:
        raise NotImplementedError(f"the {self.name} tier is read-only")

    async def delete(self, user_id: str) -> bool:
        raise NotImplementedError(f"the {self.name} tier is read-only")

    async def touch(self, user_id: str, when: float) -> None:
        """Record last use without bumping the version (not a token change)."""

    async def health(self) -> TierHealth:
        return TierHealth(self.name, UP, writable=self.writable)

    @contextlib.asynccontextmanager
    async def locked(self, user_id: str) -> AsyncIterator[None]:
        """Exclusive across processes for one user, held while a refresh runs."""
        yield

    # Pending logins (only writable tiers keep them).
    async def save_pending(self, pending: PendingLogin) -> None:
        raise NotImplementedError

    async def take_pending(self, state: str) -> PendingLogin | None:
        """Remove and return; only one caller can take a given state."""
        raise NotImplementedError

    async def newest_pending(self, user_id: str | None = None) -> PendingLogin | None:
        raise NotImplementedError

    async def sweep_pending(self, now: float | None = None) -> int:
        raise NotImplementedError

    # Audit log.
    async def append_audit(self, event: AuditEvent) -> None:
        raise NotImplementedError

    async def audit_trail(self, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections; safe to call twice."""
