"""What Claude says about an account: its usage windows and its profile (plan, organisation).

Pure data: parsing both answer shapes of ``/api/oauth/usage`` and ``/api/oauth/profile`` into
one model, and the stored per-user facts every face reads. No I/O here; fetching, leases and
storage are in ``usage_poll.py`` and the store tiers. Nothing here ever holds a token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache, partial
from typing import Any, Iterable, NamedTuple

DEFAULT_INTERVAL = 300.0          # claude_oauth.usage_interval: one usage request per user per this
PROFILE_INTERVAL = 86400.0        # a profile at most once a day (and after every login)
WARN, ALERT = 80.0, 95.0          # the board colours and the metrics counts

# Known window names (both shapes) -> the short label faces show. Unknown names keep their own.
LABELS = {
    "five_hour": "5h", "session": "5h",
    "seven_day": "7d", "weekly_all": "7d",
    "seven_day_opus": "7d opus", "seven_day_sonnet": "7d sonnet",
    "seven_day_oauth_apps": "7d oauth apps",
}
# Order faces list windows in; unknown ones follow, by name.
ORDER = ("5h", "7d", "7d opus", "7d sonnet", "7d oauth apps")


@dataclass(frozen=True)
class Window:
    name: str                       # as Claude named it (flat key, or kind[/group] of a limit)
    label: str                      # 5h, 7d, 7d opus, ... or the name itself
    utilization: float              # 0-100
    resets_at: float | None = None  # epoch seconds
    severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "label": self.label, "utilization": self.utilization,
               "resets_at": self.resets_at}
        if self.severity is not None:
            out["severity"] = self.severity
        return out


@dataclass(frozen=True)
class ExtraUsage:
    is_enabled: bool = False
    monthly_limit: float | None = None
    used_credits: float | None = None
    utilization: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Usage:
    windows: tuple[Window, ...] = ()
    extra: ExtraUsage | None = None

    def window(self, label: str) -> Window | None:
        return next((w for w in self.windows if w.label == label), None)

    @property
    def peak(self) -> float | None:
        """The highest utilization of any window (None: no window)."""
        return max((w.utilization for w in self.windows), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"windows": [w.to_dict() for w in self.windows],
                "extra_usage": self.extra.to_dict() if self.extra is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Usage | None":
        if not isinstance(data, dict):
            return None
        windows = tuple(Window(w["name"], w.get("label") or label_of(w["name"]), float(w["utilization"]),
                               w.get("resets_at"), w.get("severity"))
                        for w in data.get("windows") or () if isinstance(w, dict) and "name" in w)
        extra = data.get("extra_usage")
        return cls(windows, ExtraUsage(**{k: extra.get(k) for k in ExtraUsage.__dataclass_fields__})
                   if isinstance(extra, dict) else None)


class BadAnswer(ValueError):
    """The provider answered 200 with something that is not a usage or profile answer."""


def label_of(name: str) -> str:
    return LABELS.get(name, name)


def _time(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    try:
        when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _percent(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    if math.isnan(value):
        return None
    return min(100.0, max(0.0, value))


def _limit_name(item: dict[str, Any]) -> str:
    """``kind`` plus what narrows it: a weekly_scoped limit for opus is ``7d opus``."""
    kind = str(item.get("kind") or item.get("group") or "limit")
    scope = item.get("scope") if isinstance(item.get("scope"), dict) else {}
    narrow = scope.get("model") or scope.get("surface")
    if kind == "weekly_scoped" and narrow:
        return f"seven_day_{str(narrow).lower()}"
    group = item.get("group")
    if kind in LABELS or not group or group == kind:
        return kind
    return f"{kind}/{group}"


def _ordered(windows: dict[str, Window]) -> tuple[Window, ...]:
    rank = {label: i for i, label in enumerate(ORDER)}
    return tuple(sorted(windows.values(), key=lambda w: (rank.get(w.label, len(ORDER)), w.label)))


def parse_usage(data: Any) -> Usage:
    """Both shapes (flat windows and ``limits: [...]``) into one model. Null windows are absent,
    not zero; a window both shapes name is taken from ``limits`` (the newer one)."""
    if not isinstance(data, dict):
        raise BadAnswer("the usage answer is not a JSON object")
    windows: dict[str, Window] = {}
    for name, value in data.items():
        if name in ("limits", "extra_usage") or not isinstance(value, dict) or "utilization" not in value:
            continue
        pct = _percent(value.get("utilization"))
        if pct is None:
            continue
        label = label_of(name)
        windows[label] = Window(name, label, pct, _time(value.get("resets_at")), value.get("severity"))
    limits = data.get("limits")
    if isinstance(limits, list):
        for item in limits:
            if not isinstance(item, dict) or item.get("is_active") is False:
                continue
            pct = _percent(item.get("percent", item.get("utilization")))
            if pct is None:
                continue
            name = _limit_name(item)
            label = label_of(name)
            windows[label] = Window(name, label, pct, _time(item.get("resets_at")),
                                    item.get("severity") if isinstance(item.get("severity"), str) else None)
    extra = data.get("extra_usage")
    extra_usage = None
    if isinstance(extra, dict):
        def num(key: str) -> float | None:
            value = extra.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        extra_usage = ExtraUsage(bool(extra.get("is_enabled")), num("monthly_limit"), num("used_credits"),
                                 _percent(extra["utilization"]) if extra.get("utilization") is not None else None)
    if not windows and extra_usage is None and not any(k in data for k in ("limits", *LABELS)):
        raise BadAnswer("the usage answer names no window")
    return Usage(_ordered(windows), extra_usage)


# -- profile -----------------------------------------------------------------------------

PLAN_WORDS = {
    "default_claude_max_20x": "Max 20x", "default_claude_max_5x": "Max 5x",
    "claude_max": "Max", "claude_pro": "Pro", "default_claude_pro": "Pro",
    "claude_team": "Team", "claude_enterprise": "Enterprise",
}


def plan_words(organization_type: str | None, rate_limit_tier: str | None) -> str | None:
    """"Max 20x", "Max 5x", "Pro", "Team", "Enterprise", else the raw value (None: unknown)."""
    tier = (rate_limit_tier or "").lower()
    kind = (organization_type or "").lower()
    if "max" in kind or "max" in tier:
        if "20x" in tier:
            return "Max 20x"
        if "5x" in tier:
            return "Max 5x"
    for value in (kind, tier):
        if value in PLAN_WORDS:
            return PLAN_WORDS[value]
    return organization_type or rate_limit_tier or None


@dataclass(frozen=True)
class Profile:
    display_name: str | None = None
    email: str | None = None
    account_uuid: str | None = None
    organization_name: str | None = None
    organization_uuid: str | None = None
    organization_type: str | None = None
    rate_limit_tier: str | None = None
    subscription_status: str | None = None
    has_extra_usage_enabled: bool | None = None

    @property
    def plan(self) -> str | None:
        return plan_words(self.organization_type, self.rate_limit_tier)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "plan": self.plan}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Profile | None":
        if not isinstance(data, dict):
            return None
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def parse_profile(data: Any) -> Profile:
    """Both the older (``account.email_address``) and the 2026 (``account.email``) shapes."""
    if not isinstance(data, dict) or not isinstance(data.get("account"), dict):
        raise BadAnswer("the profile answer has no account")
    account = data["account"]
    org = data.get("organization") if isinstance(data.get("organization"), dict) else {}

    def text(source: dict, key: str) -> str | None:
        value = source.get(key)
        return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None

    extra = org.get("has_extra_usage_enabled")
    org_type = text(org, "organization_type")
    if org_type is None and account.get("has_claude_max") is True:
        org_type = "claude_max"
    elif org_type is None and account.get("has_claude_pro") is True:
        org_type = "claude_pro"
    return Profile(
        display_name=text(account, "display_name") or text(account, "full_name"),
        email=text(account, "email") or text(account, "email_address"),
        account_uuid=text(account, "uuid"),
        organization_name=text(org, "name"),
        organization_uuid=text(org, "uuid"),
        organization_type=org_type,
        rate_limit_tier=text(org, "rate_limit_tier"),
        subscription_status=text(org, "subscription_status"),
        has_extra_usage_enabled=extra if isinstance(extra, bool) else None,
    )


# -- what is stored per user ------------------------------------------------------------

@dataclass
class AccountFacts:
    """One user's last usage and profile answers, when and by whom they were fetched, and the
    last error of each. Stored apart from the tokens: writing it never touches a token."""

    user_id: str
    usage: dict[str, Any] | None = None          # Usage.to_dict()
    usage_fetched_at: float | None = None
    usage_fetched_by: str | None = None
    usage_error: str | None = None
    usage_error_at: float | None = None
    profile: dict[str, Any] | None = None        # Profile.to_dict()
    profile_fetched_at: float | None = None
    profile_fetched_by: str | None = None
    profile_error: str | None = None
    next_usage_at: float | None = None           # the lease / retry-after: no request before it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AccountFacts":
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    @property
    def usage_model(self) -> Usage | None:
        return Usage.from_dict(self.usage)

    @property
    def profile_model(self) -> Profile | None:
        return Profile.from_dict(self.profile)

    @property
    def plan(self) -> str | None:
        profile = self.profile_model
        return profile.plan if profile is not None else None

    def public(self) -> dict[str, Any]:
        """The model ``usage --json``, ``status --json``, ``users --json`` and the API share."""
        usage = self.usage_model
        return {
            "user_id": self.user_id,
            "plan": self.plan,
            "profile": self.profile,
            "profile_fetched_at": self.profile_fetched_at,
            "profile_error": self.profile_error,
            "windows": [w.to_dict() for w in usage.windows] if usage else [],
            "extra_usage": usage.extra.to_dict() if usage and usage.extra else None,
            "fetched_at": self.usage_fetched_at,
            "fetched_by": self.usage_fetched_by,
            "error": self.usage_error,
            "next_fetch_at": self.next_usage_at,
        }


def empty_public(user_id: str) -> dict[str, Any]:
    return AccountFacts(user_id).public()


def bar(percent: float | None, width: int = 5) -> str:
    """A small bar readable without colour: ``███░░``."""
    if percent is None:
        return " " * width
    filled = min(width, max(0, round(percent / 100 * width)))
    return "█" * filled + "░" * (width - filled)


def level(percent: float | None) -> str:
    """``ok``, ``high`` (>= 80) or ``full`` (>= 95): the word beside the colour."""
    if percent is None:
        return "none"
    return "full" if percent >= ALERT else "high" if percent >= WARN else "ok"


# -- what a board row shows ---------------------------------------------------------------

class UsageCells(NamedTuple):
    """A user's plan and window percentages as the board's cells and filters read them (a
    tuple: the board holds 100 000 of them)."""

    plan: str | None = None
    p5h: float | None = None
    p7d: float | None = None
    peak: float | None = None


_plan_words = lru_cache(maxsize=256)(lambda kind, tier: plan_words(kind, tier))


def cells_of_briefs(rows: Iterable[tuple]) -> dict[str, UsageCells]:
    """Rows of ``(user, organization_type, rate_limit_tier, 5h %, 7d %, peak %)``, as a store
    reads them without the rest of the facts, -> ``{user: cells}``, the same cells
    ``usage_cells`` makes. Column by column, in C: 100 000 users cost no call per user."""
    rows = rows if isinstance(rows, list) else list(rows)
    uids, kinds, tiers, five, seven, peak = ([row[i] for row in rows] for i in range(6))
    make = partial(tuple.__new__, UsageCells)
    return dict(zip(uids, map(make, zip(map(_plan_words, kinds, tiers), five, seven, peak))))


def usage_cells(facts: AccountFacts | None) -> UsageCells:
    if facts is None:
        return UsageCells()
    usage = facts.usage_model
    five = usage.window("5h") if usage else None
    seven = usage.window("7d") if usage else None
    return UsageCells(facts.plan, five.utilization if five else None, seven.utilization if seven else None,
                      usage.peak if usage else None)


def usage_term(term: str):
    """A filter term on usage: ``5h>80``, ``7d>=95``, ``5h<10``, ``any>80`` or ``plan:max`` ->
    a test of ``UsageCells``; None when the term is plain text."""
    import re

    term = term.lower()
    if term.startswith("plan:") and len(term) > 5:
        word = term[5:]
        return lambda c: c.plan is not None and word in c.plan.lower().replace(" ", "")
    match = re.fullmatch(r"(5h|7d|any)(>=|<=|>|<|=)(\d+(?:\.\d+)?)%?", term)
    if match is None:
        return None
    field = {"5h": "p5h", "7d": "p7d", "any": "peak"}[match.group(1)]
    op, limit = match.group(2), float(match.group(3))
    compare = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__,
               "=": float.__eq__}[op]
    return lambda c: getattr(c, field) is not None and compare(float(getattr(c, field)), limit)
