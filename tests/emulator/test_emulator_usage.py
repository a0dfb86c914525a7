"""The emulator's usage endpoint: both shapes, null and unknown windows, per-account values, the
per-account count, a 429 with retry-after, and config validation."""

from __future__ import annotations

import httpx
import pytest

from console.emulator.state import EmulatorState


def issue(state: EmulatorState, email: str) -> str:
    from console.emulator.state import DEFAULT_CLIENT_ID, s256

    verifier = "v" * 64
    code = state.authorize({"client_id": DEFAULT_CLIENT_ID, "redirect_uri": "http://localhost/cb",
                            "response_type": "code", "code_challenge": s256(verifier),
                            "code_challenge_method": "S256", "state": "s",
                            "scope": "user:profile user:inference"}, email=email)["code"]
    return state.exchange({"code": code, "client_id": DEFAULT_CLIENT_ID, "redirect_uri": "http://localhost/cb",
                           "code_verifier": verifier})["access_token"]


def test_shapes_nulls_unknown_and_counts():
    state = EmulatorState()
    token = issue(state, "ada@example.com")
    state.configure(usage_windows={"five_hour": 85, "seven_day": None, "new_thing": 3})
    flat = state.usage(token)
    assert flat["five_hour"]["utilization"] == 85.0 and flat["seven_day"] is None and "limits" not in flat
    assert flat["new_thing"]["utilization"] == 3.0 and "extra_usage" in flat
    state.configure(usage_shape="limits")
    limits = state.usage(token)["limits"]
    assert {item["kind"] for item in limits} == {"session", "new_thing"}
    assert next(i for i in limits if i["kind"] == "session")["severity"] == "warning"
    state.configure(usage_by_email={"ada@example.com": {"seven_day_opus": 99}})
    assert state.usage(token)["limits"][0]["scope"]["model"] == "opus"
    assert state.usage_counts() == {"ada@example.com": 3}
    with pytest.raises(ValueError):
        state.configure(usage_shape="round")


def test_429_with_retry_after_over_http(emulator):
    token = issue(emulator.state, "bob@example.com")
    emulator.state.add_fault("usage", 429, retry_after=30)
    headers = {"authorization": f"Bearer {token}", "anthropic-beta": "oauth-2025-04-20"}
    refused = httpx.get(f"{emulator.url}/api/oauth/usage", headers=headers)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
    assert httpx.get(f"{emulator.url}/api/oauth/usage", headers=headers).status_code == 200
    assert httpx.get(f"{emulator.url}/_emulator/usage_counts").json() == {"bob@example.com": 1}
