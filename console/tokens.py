"""The token record every tier stores, and the one function that says its status."""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from operator import attrgetter
from typing import Any

DEFAULT_REFRESH_BUFFER = 300.0
# Stands in for a token in listings that were read without decrypting anything.
HIDDEN = "<hidden>"


class Status(str, Enum):
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED_REFRESHABLE = "expired_refreshable"
    EXPIRED = "expired"
    NEEDS_LOGIN = "needs_login"
    LOCKED = "locked"   # stored under a key that is not configured: unreadable until it is
    ACCOUNT_DISABLED = "account_disabled"    # Claude disabled the organization
    OAUTH_NOT_ALLOWED = "oauth_not_allowed"  # Claude refuses OAuth for the organization

    @property
    def blocked(self) -> bool:
        """Claude refused the organization: kept, never refreshed until an operator acts."""
        return self in (Status.ACCOUNT_DISABLED, Status.OAUTH_NOT_ALLOWED)

    @property
    def usable(self) -> bool:
        """Valid now, or can be made valid without a new login."""
        return self in (Status.ACTIVE, Status.EXPIRING, Status.EXPIRED_REFRESHABLE)

    @property
    def urgency(self) -> int:
        """Lower is more urgent; the board sorts by it."""
        return _URGENCY[self]


_EXPIRES, _NEEDS_LOGIN, _LOCKED = attrgetter("expires_at"), attrgetter("needs_login"), attrgetter("locked")
_URGENCY = {
    Status.LOCKED: 0,
    Status.ACCOUNT_DISABLED: 0,
    Status.OAUTH_NOT_ALLOWED: 0,
    Status.NEEDS_LOGIN: 0,
    Status.EXPIRED: 1,
    Status.EXPIRED_REFRESHABLE: 2,
    Status.EXPIRING: 3,
    Status.ACTIVE: 4,
}


@dataclass
class TokenRecord:
    """One user's Claude OAuth tokens and what we know about them.

    Times are float seconds since the epoch (UTC). ``version`` increases on every
    stored write and is what compare-and-swap writes compare; 0 means "not stored in
    any writable tier yet" (for example a token that came from the environment).
    """

    user_id: str
    access_token: str
    refresh_token: str | None = None
    expires_at: float = 0.0
    scopes: list[str] = field(default_factory=list)
    account_email: str | None = None
    account_uuid: str | None = None
    organization_uuid: str | None = None
    organization_name: str | None = None
    subscription_type: str | None = None
    source: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    last_used: float | None = None
    refresh_count: int = 0
    last_refresh_at: float | None = None
    last_refresh_error_at: float | None = None
    last_refresh_error: str | None = None
    refresh_failures: int = 0
    needs_login: bool = False
    version: int = 0

    # Not a field: set by a listing on a row whose tokens are under a key that is not
    # configured (the key id, or "fernet"); such a record's status is LOCKED.
    locked = None

    @classmethod
    def none_locked(cls, records: list["TokenRecord"]) -> bool:
        """Whether no record of ``records`` (all of this class) is ``locked``: a listing's
        class may answer for a whole page without a call per row."""
        return not any(map(_LOCKED, records))

    # -- status ------------------------------------------------------------------------

    def status(self, now: float | None = None, buffer: float = DEFAULT_REFRESH_BUFFER) -> Status:
        return token_status(self, now, buffer)

    @property
    def long_lived(self) -> bool:
        """A setup token (``claude setup-token``, ``login --long-lived``): inference only, no
        refresh token, never refreshed."""
        return is_long_lived(self)

    def expires_in(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    # -- (de)serialisation -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenRecord":
        known = cls.__dataclass_fields__  # a dict: no per-call fields() walk (listings decode thousands)
        clean = {k: v for k, v in data.items() if k in known}
        clean["scopes"] = list(clean.get("scopes") or [])
        return cls(**clean)

    def evolve(self, **changes: Any) -> "TokenRecord":
        return replace(self, **changes)

    def masked(self) -> dict[str, Any]:
        """The record as shown to people: tokens masked."""
        data = self.to_dict()
        data["access_token"] = mask(self.access_token)
        data["refresh_token"] = mask(self.refresh_token)
        return data


# -- values from outside (files, imports, restores, the environment) ---------------------------

TOKEN_MAX = 16 * 1024                  # a Claude token is ~100 characters; an encrypted one ~300
TEXT_MAX = 1024                        # emails, uuids, names, errors
SCOPES_MAX = 100
EARLIEST = 946684800.0                 # 2000-01-01 UTC
LATEST = 4102444800.0                  # 2100-01-01 UTC
_TEXT_FIELDS = ("account_email", "account_uuid", "organization_uuid", "organization_name",
                "subscription_type", "source", "last_refresh_error")
_TIME_FIELDS = ("created_at", "updated_at", "last_used", "last_refresh_at", "last_refresh_error_at")
_COUNT_FIELDS = ("refresh_count", "refresh_failures", "version")


class BadValue(ValueError):
    """A stored or imported value out of type or range; ``str`` names the field."""


def _check_time(name: str, value: Any, required: bool) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f"{name} is not a number of seconds since the epoch")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise BadValue(f"{name} is not a finite number")
    if number == 0 and not required:
        return
    if not EARLIEST <= number <= LATEST:
        raise BadValue(f"{name} {number:g} is not a time between the years 2000 and 2100")


def check_values(data: dict[str, Any]) -> None:
    """Types and ranges of one record's fields, before anything is stored or shown.
    Raises ``BadValue`` naming the first field that is wrong."""
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise BadValue("access_token is missing or not text")
    if len(access) > TOKEN_MAX:
        raise BadValue(f"access_token is longer than {TOKEN_MAX} characters")
    refresh = data.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or len(refresh) > TOKEN_MAX):
        raise BadValue(f"refresh_token is not text of at most {TOKEN_MAX} characters")
    for name, value in ((k, data.get(k)) for k in ("access_token", "refresh_token")):
        if isinstance(value, str) and not (value.isascii() and value.isprintable()):
            raise BadValue(f"{name} holds characters a token never has")
    _check_time("expires_at", data.get("expires_at", 0.0), required=False)
    for name in _TIME_FIELDS:
        _check_time(name, data.get(name), required=False)
    scopes = data.get("scopes")
    if scopes is not None:
        if not isinstance(scopes, list) or not all(isinstance(s, str) and len(s) <= 256 for s in scopes):
            raise BadValue("scopes is not a list of strings")
        if len(scopes) > SCOPES_MAX:
            raise BadValue(f"scopes has more than {SCOPES_MAX} entries")
    for name in _TEXT_FIELDS:
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > TEXT_MAX):
            raise BadValue(f"{name} is not text of at most {TEXT_MAX} characters")
    for name in _COUNT_FIELDS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise BadValue(f"{name} is not a whole number of 0 or more")
    if not isinstance(data.get("needs_login", False), bool):
        raise BadValue("needs_login is not true or false")


def _ok_token(v: Any, optional: bool) -> bool:
    if v is None:
        return optional
    return type(v) is str and 0 < len(v) <= TOKEN_MAX and v.isascii() and v.isprintable()


def _ok_time(v: Any) -> bool:
    return v is None or (type(v) in (int, float) and (v == 0 or EARLIEST <= v <= LATEST))


def _ok_text(v: Any) -> bool:
    return v is None or (type(v) is str and len(v) <= TEXT_MAX)


def _ok_count(v: Any) -> bool:
    return v is None or (type(v) is int and v >= 0)


def _ok_scopes(v: Any) -> bool:
    return v is None or (type(v) is list and len(v) <= SCOPES_MAX
                         and all(type(s) is str and len(s) <= 256 for s in v))


_COLUMN_CHECKS = {"access_token": lambda v: _ok_token(v, False), "refresh_token": lambda v: _ok_token(v, True),
                  "expires_at": _ok_time, "scopes": _ok_scopes, "needs_login": lambda v: type(v) is bool,
                  **{n: _ok_time for n in _TIME_FIELDS}, **{n: _ok_text for n in _TEXT_FIELDS},
                  **{n: _ok_count for n in _COUNT_FIELDS}}


_NONE = type(None)


def _column_ok(name: str, column: list) -> bool:
    """The whole column at C speed (a restore of 100 000 users): True when no value in it can
    be wrong. False only means "look row by row"."""
    import math

    kinds = set(map(type, column))
    present = list(filter(None, column))   # None, 0, "" and False need no range check
    if name in ("access_token", "refresh_token"):
        text = "".join(present) if kinds <= {str, _NONE} else None
        return (text is not None and (name == "refresh_token" or _NONE not in kinds)
                and max(map(len, present), default=0) <= TOKEN_MAX and text.isascii() and text.isprintable()
                and (name == "refresh_token" or all(present) and len(present) == len(column)))
    if name == "expires_at" or name in _TIME_FIELDS:
        return (kinds <= {float, int, _NONE} and math.isfinite(math.fsum(present))
                and (not present or (min(present) >= EARLIEST and max(present) <= LATEST)))
    if name in _TEXT_FIELDS:
        return kinds <= {str, _NONE} and max(map(len, present), default=0) <= TEXT_MAX
    if name in _COUNT_FIELDS:
        return kinds <= {int, _NONE} and min(present, default=0) >= 0
    if name == "needs_login":
        return kinds <= {bool}
    if name == "scopes":
        if not kinds <= {list, _NONE} or max(map(len, present), default=0) > SCOPES_MAX:
            return False
        items = list(itertools.chain.from_iterable(present))
        return set(map(type, items)) <= {str} and max(map(len, items), default=0) <= 256
    return False


def check_columns(columns: dict[str, list], count: int) -> dict[int, str]:
    """``check_values`` for many records held as columns (restores of 100 000 users):
    ``{row: what is wrong}``. A column is first judged whole; one that might hold a bad value
    is looked at row by row, and only suspect rows go through ``check_values``, which names
    the field."""
    suspects: set[int] = set()
    for name, ok in _COLUMN_CHECKS.items():
        column = columns.get(name)
        if column is not None and not _column_ok(name, column):
            suspects.update(i for i, v in enumerate(column) if not ok(v))
    bad: dict[int, str] = {}
    for row in sorted(suspects):
        try:
            check_values({name: column[row] for name, column in columns.items()})
        except BadValue as exc:
            bad[row] = str(exc)
    return bad


def token_status(record: TokenRecord, now: float | None = None,
                 buffer: float = DEFAULT_REFRESH_BUFFER) -> Status:
    """The single place that decides a token's status.

    ``account_disabled`` and ``oauth_not_allowed`` are stored as ``needs_login`` (never
    refreshed by anything automatic) with the refusal's name heading ``last_refresh_error``,
    so every tier keeps them without a new column.
    """
    if record.locked:
        return Status.LOCKED
    if record.needs_login:
        head = (record.last_refresh_error or "").split(":", 1)[0]
        if head == Status.ACCOUNT_DISABLED.value:
            return Status.ACCOUNT_DISABLED
        if head == Status.OAUTH_NOT_ALLOWED.value:
            return Status.OAUTH_NOT_ALLOWED
        return Status.NEEDS_LOGIN
    left = record.expires_at - (time.time() if now is None else now)
    if left > 0 and is_long_lived(record):
        return Status.ACTIVE  # never refreshed, so never "expiring": active until it expires
    if left > buffer:
        return Status.ACTIVE
    if left > 0:
        return Status.EXPIRING
    if record.refresh_token:
        return Status.EXPIRED_REFRESHABLE
    return Status.EXPIRED


def token_statuses(records: list[TokenRecord], now: float,
                   buffer: float = DEFAULT_REFRESH_BUFFER) -> list[Status]:
    """``token_status`` of many records (a board loading 100 000 users). Most tokens are
    simply active: further than the buffer from expiry, readable, no login needed. That case
    is decided here from three fields; every other row goes through ``token_status``."""
    active, limit = Status.ACTIVE, now + buffer
    kinds = set(map(type, records))
    if len(kinds) == 1 and kinds.pop().none_locked(records):
        return [active if expires > limit and not login else token_status(record, now, buffer)
                for record, expires, login in zip(records, map(_EXPIRES, records), map(_NEEDS_LOGIN, records))]
    return [active if record.expires_at > limit and not record.needs_login and not record.locked
            else token_status(record, now, buffer) for record in records]


LONG_LIVED_SCOPE = "user:inference"


def is_long_lived(record: TokenRecord) -> bool:
    return (not record.refresh_token and LONG_LIVED_SCOPE in record.scopes
            and "user:profile" not in record.scopes)


def mask(token: str | None) -> str:
    """``sk-ant-oat01-…abcd``: enough to tell tokens apart, never enough to use one."""
    if not token:
        return ""
    if token.startswith("sk-ant-"):
        prefix = token[: token.find("-", 7) + 1] if token.find("-", 7) > 0 else "sk-ant-"
    else:
        prefix = ""
    return f"{prefix}…{token[-4:]}" if len(token) > 8 else "…"


def parse_expires_at(value: Any) -> float:
    """Accept seconds or milliseconds since the epoch (both appear in the wild); a value that
    is not a finite time between 2000 and 2100 (or 0: unknown) raises ``ValueError``."""
    if isinstance(value, bool):
        raise BadValue("expiresAt is not a number")
    number = float(value)
    if number > 1e11:  # later than the year 5138 in seconds: it is milliseconds
        number /= 1000.0
    _check_time("expiresAt", number, required=False)
    return number


def format_time(ts: float | None) -> str:
    """``2026-11-22 01:23:00 UTC``, or ``never``: one format for every face."""
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def count_text(n: int, noun: str, plural: str | None = None) -> str:
    """``1 user``, ``3 users``, ``1 batch``, ``2 batches``: a count with its noun, for messages."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural or (noun + 'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else noun + 's')}"


def format_span(seconds: float) -> str:
    """``10 minutes``, ``1 minute``, ``45 seconds``: a setting's length, in words, for sentences."""
    s = int(round(seconds))
    if s >= 60 and s % 60 == 0:
        n, unit = s // 60, "minute"
    elif s >= 60:
        return f"{s // 60} minute{'s' if s // 60 != 1 else ''} {s % 60} second{'s' if s % 60 != 1 else ''}"
    else:
        n, unit = s, "second"
    return f"{n} {unit}{'s' if n != 1 else ''}"


def format_duration(seconds: float) -> str:
    """``7h 59m``, ``4m 10s``, ``-3m``: compact, for status lines and the board."""
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    if s >= 86400:
        return f"{sign}{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{sign}{s // 60}m {s % 60:02d}s"
    return f"{sign}{s}s"
