"""The tier interface the hierarchy composes, and the small records that cross it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Literal, Mapping

from ..tokens import TokenRecord
from .refresh_rule import RefreshRule

if TYPE_CHECKING:
    from ..crypto import Keyring

# A tier's state in ``health``: "held" (the rescue journal keeps tokens not yet stored) and
# "locked" (stored rows no configured key opens) are the service's own lines.
TierState = Literal["up", "down", "not configured", "held", "locked"]
UP: TierState = "up"
DOWN: TierState = "down"
NOT_CONFIGURED: TierState = "not configured"


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


_foreign_warned: set[tuple[str, str]] = set()


def warn_foreign_pending(where: str, key_id: str | None, user_id: str) -> None:
    """One warning per store and key id: a pending login sealed under a key this process lacks
    (another replica's key, or one rotated away) is skipped, and swept when it expires."""
    if (where, key_id or "?") in _foreign_warned:
        return
    _foreign_warned.add((where, key_id or "?"))
    logging.getLogger("console.store").warning(
        "%s: a pending login (user %r) was started under encryption key id %s, which is not "
        "configured here; it is skipped, and removed when it expires", where, user_id, key_id or "?")


def foreign_pending_error(key_id: str | None, user_id: str):
    """The one line for finishing a login whose verifier was sealed under a key we lack."""
    from ..errors import CryptoError

    return CryptoError(f"the login of user {user_id!r} was started under encryption key id {key_id or '?'}, "
                       "which is not configured here", hint="finish it where it was started, add that key to "
                       "CLAUDE_TOKEN_ENCRYPTION_KEY, or start a new login")


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


@dataclass(frozen=True)
class BulkAudit:
    """The audit events of a bulk write (a restore's): one per user written, ``details[user]``
    its detail. The tier records them with the write itself, so no change lands unaudited
    (PostgreSQL: in the same statement, from the users the upsert returns)."""

    action: str
    actor: str
    details: Mapping[str, str]

    def events(self, users: Iterable[str]) -> list[AuditEvent]:
        now = time.time()
        return [AuditEvent(self.action, uid, True, self.details.get(uid, ""), self.actor, now) for uid in users]


@dataclass
class TierHealth:
    name: str
    state: TierState
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


@dataclass
class Changes:
    """What changed in a tier since a cursor (``Tier.changes_since``).

    ``everything``: the tier cannot say which users changed (a restore, a file rewritten, a
    cursor too old): list it again. Otherwise ``records`` are the changed users (tokens
    ``HIDDEN``) and ``removed`` the users deleted. ``cursor`` is what to ask with next time.
    """

    cursor: Any
    records: list[TokenRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    everything: bool = False


class Tier:
    """One storage tier. Methods raise ``TierUnavailable`` when the backend is down.

    ``put`` with ``expected_version`` is a compare-and-swap: it raises ``StaleWrite``
    unless the stored version equals it (0 = "must not exist yet"). Every successful
    put returns the record as stored, with its new version.

    What a tier can do beyond the methods every tier has is declared by the flags below, each
    with the method(s) it promises; a method whose flag is off raises ``NotImplementedError``.
    Callers ask the flag, never the tier's name.
    """

    name = "tier"
    writable = False
    keyring: "Keyring | None" = None   # the keys this tier encrypts with (None: it stores nothing)
    # Users the last listing could not read (user -> why); a tier that can hold one bad entry
    # among good ones replaces this with its own dict.
    unreadable: Mapping[str, str] = MappingProxyType({})

    IS_CACHE = False              # a copy of the primary, read first: fill, delete_many, listen
    IS_FALLBACK = False           # takes the writes while the primary is down (allow_file_fallback)
    REWRITES_WHOLE = False        # every write rewrites the whole store: one big batch is cheapest
    CAN_LIST_PAGE = False         # list_page: keyset pages in user id order
    CAN_PUT_MANY = False          # put_many: bulk writes (restores)
    CAN_EXPORT_ROWS = False       # export_rows: rows as stored (tokens encrypted), for backups
    CAN_EXPORT_COLUMNS = False    # export_columns: the same as columns, all but tokens as JSON text
    CAN_DUMP_TABLE = False        # dump_table: the table as COPY text (SQL backups)
    CAN_APPEND_AUDIT_MANY = False  # append_audit_many: many audit events in one write
    CAN_ROTATE_KEYS = False       # rotate_keys: re-encrypt everything to the first key
    CAN_MIGRATE = False           # migrate, schema_version: a schema of its own
    CAN_KEEP_FACTS = False        # load_facts, update_facts, claim_fetch, claim_due_usage, defer_fetch:
    #                               usage and profile answers (console/usage.py) and their lease
    CAN_BRIEF_FACTS = False       # load_brief_facts, brief_facts_changed: only what a board row shows
    CAN_WATCH = False             # change_cursor, changes_since: only what changed, cheaply

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

    # -- background refresh --------------------------------------------------------------

    async def claim_due(self, *, limit: int, window: float, keepalive: float, lease: float, owner: str,
                        backoff_base: float, backoff_cap: float) -> list[tuple[str, int]]:
        """``(user, version)`` of up to ``limit`` users due for a refresh (``refresh_rule``),
        judged from a listing that decrypts nothing. A shared tier also leases them to ``owner``
        for ``lease`` seconds so other replicas skip them; a single-process one needs no lease."""
        rule = RefreshRule(window=window, keepalive=keepalive, backoff_base=backoff_base,
                           backoff_cap=backoff_cap)
        return rule.pick(await self.list(), time.time(), limit)

    # -- optional capabilities (see the flags above) -------------------------------------

    def _lacks(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"the {self.name} tier cannot {what}")

    async def list_page(self, after: str | None, limit: int, secrets: bool = False) -> list[TokenRecord]:
        raise self._lacks("list in pages")

    async def put_many(self, records: list[TokenRecord], expected: dict[str, int] | None = None,
                       authors: dict[str, tuple[str | None, str | None]] | None = None,
                       audit: BulkAudit | None = None) -> list[str]:
        raise self._lacks("take bulk writes")

    async def export_rows(self, users: list[str] | None = None) -> tuple[list[str], list]:
        raise self._lacks("export its rows as stored")

    async def export_columns(self, users: list[str] | None, tokens: Any) -> tuple[Any, dict[str, str]] | None:
        raise self._lacks("export its rows as columns")

    async def dump_table(self, users: list[str] | None = None, exclude: tuple[str, ...] = ()
                         ) -> tuple[list[tuple[str, str]], bytes, int]:
        raise self._lacks("dump a table")

    async def append_audit_many(self, events: list[AuditEvent]) -> None:
        raise self._lacks("append many audit events at once")

    async def rotate_keys(self, *, batch: int = 500, progress: Callable[["RotationReport"], None] | None = None,
                          on_batch: Callable[[list[str]], object] | None = None) -> "RotationReport":
        raise self._lacks("rotate keys")

    async def migrate(self) -> list[str]:
        raise self._lacks("migrate a schema")

    async def load_facts(self, user_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Stored ``AccountFacts`` dicts (with ``next_usage_at``) of ``user_ids`` (None: everyone)."""
        raise self._lacks("keep usage facts")

    async def load_brief_facts(self, user_ids: list[str] | None = None) -> list[tuple]:
        """``(user, organization_type, rate_limit_tier, 5h %, 7d %, peak %)`` per user with facts
        (None: everyone): what the board shows, read without the facts documents."""
        raise self._lacks("read brief usage facts")

    async def brief_facts_changed(self, since: float | None) -> tuple[float, list[tuple]]:
        """``(the store's clock now, brief facts)`` of the users whose facts were written at or
        after ``since`` (that clock's epoch seconds; None: everyone). The time is taken before
        the read, so a later call given it misses nothing written after this one."""
        raise self._lacks("read brief usage facts")

    async def update_facts(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into a user's facts; returns them as stored. Never touches tokens."""
        raise self._lacks("keep usage facts")

    async def update_facts_many(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """``update_facts`` for a polling batch, in one write."""
        raise self._lacks("keep usage facts")

    async def records_of(self, user_ids: list[str]) -> list[TokenRecord]:
        """The token records (decrypted) of a claimed batch, in one read."""
        raise self._lacks("keep usage facts")

    async def claim_fetch(self, user_id: str, *, interval: float, owner: str) -> bool:
        """The polite lease: true (and the next allowed time moved ``interval`` ahead) when no
        process asked Claude for this user's usage within the interval, across every process."""
        raise self._lacks("keep usage facts")

    async def claim_due_usage(self, *, limit: int, interval: float, owner: str,
                              enroll: bool = True) -> list[str]:
        """Up to ``limit`` users with ``user:profile`` whose lease has lapsed, each claimed."""
        raise self._lacks("keep usage facts")

    async def defer_fetch(self, user_id: str, until: float) -> None:
        """No usage request for this user before ``until`` (a 429's retry-after)."""
        raise self._lacks("keep usage facts")

    async def drop_facts(self, user_id: str) -> None:
        """Forget a user's facts (logout)."""
        raise self._lacks("keep usage facts")

    async def fill(self, record: TokenRecord) -> None:
        """(caches) Store a record read from the primary, unless a write cached a newer one."""
        raise self._lacks("be filled")

    async def delete_many(self, user_ids: list[str]) -> None:
        """(caches) Drop many users, on every replica."""
        raise self._lacks("drop many users")

    async def change_cursor(self) -> Any:
        """A cursor for ``changes_since``, taken before a full listing."""
        raise self._lacks("say what changed")

    async def changes_since(self, cursor: Any) -> "Changes":
        """The users changed since ``cursor`` (see ``Changes``)."""
        raise self._lacks("say what changed")

    def listen(self, callback: Callable[[str | None], Any]) -> None:
        """(caches) Call ``callback(user_id)`` when another process changes a user."""
        raise self._lacks("report other processes' changes")
