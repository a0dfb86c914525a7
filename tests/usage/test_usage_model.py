"""Both usage shapes and both profile shapes into one model: labels, unknown windows, nulls, plans."""

from __future__ import annotations

import pytest

from console.usage import (AccountFacts, BadAnswer, Usage, bar, level, parse_profile, parse_usage,
                           plan_words)

FLAT = {
    "five_hour": {"utilization": 42.5, "resets_at": "2026-09-01T10:00:00+00:00"},
    "seven_day": {"utilization": 81, "resets_at": "2026-09-05T00:00:00Z"},
    "seven_day_opus": None,
    "seven_day_sonnet": {"utilization": 3, "resets_at": None},
    "seven_day_oauth_apps": None,
    "brand_new_window": {"utilization": 12, "resets_at": "2026-09-02T00:00:00Z"},
    "extra_usage": {"is_enabled": True, "monthly_limit": 5000, "used_credits": 1250, "utilization": 25},
}
LIMITS = {"limits": [
    {"kind": "session", "group": "session", "percent": 96, "severity": "critical",
     "resets_at": "2026-09-01T10:00:00Z", "scope": {"model": None, "surface": None}, "is_active": True},
    {"kind": "weekly_all", "group": "weekly_all", "percent": 40, "severity": "normal",
     "resets_at": "2026-09-05T00:00:00Z", "scope": {}, "is_active": True},
    {"kind": "weekly_scoped", "group": "weekly_scoped", "percent": 70, "severity": "normal",
     "resets_at": "2026-09-05T00:00:00Z", "scope": {"model": "opus", "surface": None}, "is_active": True},
    {"kind": "monthly_surprise", "group": "x", "percent": 5, "resets_at": None, "is_active": True},
    {"kind": "weekly_scoped", "percent": 99, "scope": {"model": "haiku"}, "is_active": False},
]}


def labels(usage: Usage) -> dict[str, float]:
    return {w.label: w.utilization for w in usage.windows}


def test_flat_shape_labels_nulls_and_unknown_windows():
    usage = parse_usage(FLAT)
    assert labels(usage) == {"5h": 42.5, "7d": 81.0, "7d sonnet": 3.0, "brand_new_window": 12.0}
    assert usage.window("7d opus") is None  # null is absent, not zero
    assert usage.window("5h").resets_at == pytest.approx(1788256800.0)
    assert usage.window("7d sonnet").resets_at is None
    assert usage.window("brand_new_window").name == "brand_new_window"
    assert usage.extra.is_enabled and usage.extra.used_credits == 1250 and usage.extra.utilization == 25
    assert [w.label for w in usage.windows][:3] == ["5h", "7d", "7d sonnet"]
    assert usage.peak == 81.0


def test_limits_shape_kinds_scopes_severity_and_inactive():
    usage = parse_usage(LIMITS)
    assert labels(usage) == {"5h": 96.0, "7d": 40.0, "7d opus": 70.0, "monthly_surprise/x": 5.0}
    assert usage.window("5h").severity == "critical"
    assert usage.window("7d opus").name == "seven_day_opus"
    assert usage.extra is None


def test_both_shapes_in_one_answer_give_one_window_per_label():
    usage = parse_usage({**FLAT, **LIMITS})
    assert labels(usage)["5h"] == 96.0  # the newer shape wins a window both name
    assert len([w for w in usage.windows if w.label == "5h"]) == 1


def test_round_trip_through_the_stored_dict():
    usage = parse_usage({**FLAT, **LIMITS})
    assert Usage.from_dict(usage.to_dict()) == usage


@pytest.mark.parametrize("answer", [[], "x", {"unrelated": 1}])
def test_answers_that_are_not_usage_are_refused(answer):
    with pytest.raises(BadAnswer):
        parse_usage(answer)


def test_utilization_is_clamped_and_nan_dropped():
    usage = parse_usage({"five_hour": {"utilization": 140}, "seven_day": {"utilization": float("nan")}})
    assert labels(usage) == {"5h": 100.0}


PROFILE_2026 = {
    "account": {"uuid": "a-1", "email": "ada@example.com", "display_name": "Ada", "has_claude_max": True},
    "organization": {"uuid": "o-1", "name": "Ada's Org", "organization_type": "claude_max",
                     "billing_type": "stripe_subscription", "rate_limit_tier": "default_claude_max_5x",
                     "has_extra_usage_enabled": True, "subscription_status": "active"},
}
PROFILE_OLD = {"account": {"uuid": "a-2", "email_address": "bob@example.com", "display_name": "Bob"},
               "organization": {"uuid": "o-2", "name": "Bob's Org"}}


def test_profile_both_shapes():
    new = parse_profile(PROFILE_2026)
    assert (new.email, new.display_name, new.organization_name, new.organization_uuid) == \
        ("ada@example.com", "Ada", "Ada's Org", "o-1")
    assert new.plan == "Max 5x" and new.has_extra_usage_enabled is True
    assert new.subscription_status == "active" and new.rate_limit_tier == "default_claude_max_5x"
    old = parse_profile(PROFILE_OLD)
    assert old.email == "bob@example.com" and old.plan is None and old.has_extra_usage_enabled is None


@pytest.mark.parametrize("kind,tier,words", [
    ("claude_max", "default_claude_max_20x", "Max 20x"),
    ("claude_max", "default_claude_max_5x", "Max 5x"),
    ("claude_pro", "default_claude_pro", "Pro"),
    ("claude_team", None, "Team"),
    ("claude_enterprise", "whatever", "Enterprise"),
    ("claude_galaxy", None, "claude_galaxy"),
    (None, None, None),
])
def test_plan_in_words(kind, tier, words):
    assert plan_words(kind, tier) == words


def test_public_model_and_bars():
    facts = AccountFacts("u", usage=parse_usage(FLAT).to_dict(), usage_fetched_at=1.0, usage_fetched_by="me",
                         profile=parse_profile(PROFILE_2026).to_dict())
    public = facts.public()
    assert public["plan"] == "Max 5x" and public["fetched_by"] == "me"
    assert [w["label"] for w in public["windows"]][:2] == ["5h", "7d"]
    assert "7d opus" not in [w["label"] for w in public["windows"]]
    assert bar(100) == "█████" and bar(0) == "░░░░░" and bar(None) == "     "
    assert (level(79.9), level(80), level(95), level(None)) == ("ok", "high", "full", "none")
