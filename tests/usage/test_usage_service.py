"""Fetching usage and profile through the service against the emulator, on the file tier:
the lease, a 429 with retry-after, long-lived tokens skipped, refusals, tokens never touched."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from console.service import AuthService
from console.tokens import Status


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def token_file(settings):
    return os.path.expanduser(settings.token_file)


async def test_usage_is_fetched_parsed_and_stored_with_who_and_when(service, login, emulator):
    emulator.state.configure(usage_shape="both",
                             usage_windows={"five_hour": 85, "seven_day": 12, "seven_day_opus": None,
                                            "novel_limit": 7})
    await login(service, "ada")
    facts = await service.usage("ada", fresh=True)
    usage = facts.usage_model
    assert {w.label: w.utilization for w in usage.windows} == {"5h": 85.0, "7d": 12.0, "novel_limit": 7.0}
    assert usage.window("5h").severity == "high" or usage.window("5h").severity is not None
    assert facts.usage_fetched_by and "pid" in facts.usage_fetched_by
    assert facts.usage_fetched_at is not None and facts.usage_error is None
    # Stored: a second service (another process) reads the same, without asking.
    before = emulator.stats()["usage_requests"]
    other = AuthService(service.settings)
    try:
        again = await other.usage("ada")
    finally:
        await other.aclose()
    assert again.usage == facts.usage
    assert emulator.stats()["usage_requests"] == before


async def test_profile_after_login_both_shapes_and_plan(service, login, emulator):
    emulator.state.configure(profile_shape="email",
                             plan_by_email={"pro@example.com": {"organization_type": "claude_pro",
                                                                "rate_limit_tier": "default_claude_pro"}})
    await login(service, "pro", email="pro@example.com")
    await login(service, "max", email="max@example.com")
    await service.aclose()  # waits for the profile fetched after each login
    fresh = AuthService(service.settings)
    try:
        got = await fresh.usage_of(["pro", "max"])
        assert got["pro"].plan == "Pro" and got["max"].plan == "Max 20x"
        assert got["pro"].profile_model.email == "pro@example.com"
        emulator.state.configure(profile_shape="email_address")
        old = await fresh.fetch_profile("pro", force=True)
        assert old.profile_model.email == "pro@example.com" and old.plan is None
        # At most once a day unless forced.
        before = emulator.stats()["profile_requests"]
        await fresh.fetch_profile("pro")
        assert emulator.stats()["profile_requests"] == before
    finally:
        await fresh.aclose()


async def test_lease_one_request_per_interval_even_with_fresh(service, login, emulator):
    await login(service, "ada")
    before = emulator.stats()["usage_requests"]
    for _ in range(5):
        await service.usage("ada", fresh=True)
    assert emulator.stats()["usage_requests"] == before + 1


async def test_429_honours_retry_after_and_leaves_tokens_alone(settings, login, emulator, token_file):
    service = AuthService(settings.replace(usage_interval=0.0))
    try:
        await login(service, "ada")
        await service.usage("ada", fresh=True)
        tokens_before = digest(token_file)
        emulator.state.add_fault("usage", 429, retry_after=120)
        facts = await service.usage("ada", fresh=True)
        assert "429" in facts.usage_error and "120s" in facts.usage_error
        assert facts.usage is not None  # the last good answer is kept
        assert facts.next_usage_at >= facts.usage_error_at + 119
        asked = emulator.stats()["usage_requests"]
        await service.usage("ada", fresh=True)  # the next request waits for retry-after
        assert emulator.stats()["usage_requests"] == asked
        record = await service.get_record("ada")
        assert service.status_of(record) is Status.ACTIVE
        assert digest(token_file) == tokens_before
    finally:
        await service.aclose()


@pytest.mark.parametrize("status,body", [
    (500, None), (401, None), (403, None),
    (200, {"not": "usage"}),
])
async def test_usage_errors_never_alter_stored_tokens(settings, login, emulator, token_file, status, body):
    service = AuthService(settings.replace(usage_interval=0.0))
    try:
        await login(service, "ada")
        await service.aclose()
        service = AuthService(settings.replace(usage_interval=0.0))
        before = digest(token_file)
        emulator.state.add_fault("usage", status, body=body)
        facts = await service.usage("ada", fresh=True)
        assert facts.usage_error, facts
        assert digest(token_file) == before
        assert service.status_of(await service.get_record("ada")) is Status.ACTIVE
    finally:
        await service.aclose()


async def test_long_lived_token_is_skipped_with_the_reason(service, emulator):
    start = await service.start_login("setup", long_lived=True)
    approved = emulator.approve(start.authorization_url, email="setup@example.com")
    await service.complete_login(approved["pasted"])
    before = emulator.stats()["usage_requests"]
    facts = await service.usage("setup", fresh=True)
    assert "long-lived" in facts.usage_error and "user:profile" in facts.usage_error
    assert emulator.stats()["usage_requests"] == before


async def test_a_disabled_organization_maps_to_the_refusal_status(settings, login, emulator):
    service = AuthService(settings.replace(usage_interval=0.0))
    try:
        await login(service, "ada")
        emulator.state.set_org_state("ada@example.com", "disabled")
        facts = await service.usage("ada", fresh=True)
        assert "disabled" in facts.usage_error
        service.forget("ada")
        assert service.status_of(await service.get_record("ada")) is Status.ACCOUNT_DISABLED
    finally:
        await service.aclose()


async def test_a_store_that_cannot_say_what_changed_gives_everyones_cells(service, login, emulator):
    """The file tier keeps no write times for facts: a read "since" a mark is everyone's, and
    its mark is None, so a board keeps reading everyone."""
    await login(service, "olga")
    await service.usage("olga", fresh=True)
    mark, cells = await service.usage_cells_changed(time.time() + 3600)
    assert mark is None and set(cells) == {"olga"} and cells["olga"] == (await service.usage_cells())["olga"]
