"""``GET /auth/claude/usage`` (one user, everyone) behind the master key, ``/auth/claude/users``
with plan and usage, and the usage gauges on ``/metrics``."""

from __future__ import annotations

from .helpers import AUTH


async def test_usage_endpoints_users_and_metrics(client, api_service, emulator, login):
    emulator.state.configure(profile_shape="email", usage_by_email={
        "ada@example.com": {"five_hour": 96, "seven_day": 50, "seven_day_opus": None},
        "bob@example.com": {"five_hour": 81, "seven_day": 10, "mystery": 1}})
    await login(api_service, "ada")
    await login(api_service, "bob")
    assert (await client.get("/auth/claude/usage", params={"user_id": "ada"})).status_code == 401
    one = await client.get("/auth/claude/usage", params={"user_id": "ada"}, headers=AUTH)
    assert one.status_code == 200, one.text
    body = one.json()
    assert {w["label"]: w["utilization"] for w in body["windows"]} == {"5h": 96.0, "7d": 50.0}
    assert body["fetched_by"] and body["error"] is None
    await api_service.usage("bob", fresh=True)
    every = (await client.get("/auth/claude/usage", headers=AUTH)).json()
    assert every["count"] == 2 and [u["user_id"] for u in every["users"]] == ["ada", "bob"]
    assert "mystery" in [w["label"] for w in every["users"][1]["windows"]]
    users = (await client.get("/auth/claude/users", headers=AUTH)).json()["users"]
    assert users[0]["plan"] == "Max 20x" and users[0]["usage"]["windows"] == body["windows"]
    missing = await client.get("/auth/claude/usage", params={"user_id": "nobody"}, headers=AUTH)
    assert missing.status_code == 404 and "not logged in" in missing.json()["error"]
    metrics = (await client.get("/metrics", headers=AUTH)).text
    assert 'claude_console_usage_utilization{user="ada",window="5h"} 96.0' in metrics
    assert 'claude_console_usage_users_over{threshold="80",window="5h"} 2.0' in metrics
    assert 'claude_console_usage_users_over{threshold="95",window="5h"} 1.0' in metrics
    doc = (await client.get("/openapi.json", headers=AUTH)).json()
    assert "/auth/claude/usage" in doc["paths"] and "Usage" in doc["components"]["schemas"]
