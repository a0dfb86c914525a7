"""GET /auth/claude/oauth/token: an access token for a sidecar, behind the master key, audited,
rate limited per user, refreshed first when inside the buffer; never the refresh token.
(This is the one endpoint that carries a token, so its clients skip the token scan.)"""

from __future__ import annotations

import time

import httpx

from console.api import create_api
from console.api.app import TOKEN_BURST
from console.api.openapi import PATHS

from .helpers import AUTH


def plain_client(service, settings, **options) -> httpx.AsyncClient:
    app = create_api(service, settings, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)),
                             base_url="http://api.test")


async def test_hands_out_a_valid_access_token_only(api_service, api_settings, emulator, login):
    record = await login(api_service, "alice")
    async with plain_client(api_service, api_settings) as client:
        assert (await client.get("/auth/claude/oauth/token", params={"user_id": "alice"})).status_code == 401
        r = await client.get("/auth/claude/oauth/token", params={"user_id": "alice"}, headers=AUTH)
        assert r.status_code == 200
        assert r.json() == {"access_token": record.access_token, "expires_at": record.expires_at}
        assert record.refresh_token not in r.text and r.headers["cache-control"] == "no-store"
        trail = await api_service.audit_trail("alice")
        assert trail[0].action == "token_handed_out" and trail[0].detail == "to api:127.0.0.1"

        # inside the refresh buffer: refreshed first, so the sidecar never gets a dying token
        stored = await api_service.get_record("alice")
        await api_service.store.put(stored.evolve(expires_at=time.time() + 60), stored.version)
        api_service.forget()
        r = await client.get("/auth/claude/oauth/token", params={"user_id": "alice"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["access_token"] != record.access_token
        assert r.json()["expires_at"] > time.time() + 3600

        r = await client.get("/auth/claude/oauth/token", params={"user_id": "nobody"}, headers=AUTH)
        assert r.status_code == 404 and "not logged in" in r.json()["error"]


async def test_rate_limited_per_user(api_service, api_settings, emulator, login):
    await login(api_service, "alice")
    await login(api_service, "bob")
    async with plain_client(api_service, api_settings) as client:
        for _ in range(TOKEN_BURST):
            r = await client.get("/auth/claude/oauth/token", params={"user_id": "alice"}, headers=AUTH)
            assert r.status_code == 200
        r = await client.get("/auth/claude/oauth/token", params={"user_id": "alice"}, headers=AUTH)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"].startswith("too many token requests for user 'alice'; retry in ")
        r = await client.get("/auth/claude/oauth/token", params={"user_id": "bob"}, headers=AUTH)
        assert r.status_code == 200  # another user's bucket is full


async def test_refused_without_a_master_key(api_service, settings, emulator, login):
    await login(api_service, "alice")
    async with plain_client(api_service, settings, insecure_no_auth=True) as client:
        r = await client.get("/auth/claude/oauth/token", params={"user_id": "alice"})
        assert r.status_code == 403 and "needs a master key" in r.json()["error"]
        assert "sk-ant" not in r.text


def test_documented():
    op = PATHS["/auth/claude/oauth/token"]["get"]
    assert op["operationId"] == "getAccessToken" and "429" in op["responses"] and "403" in op["responses"]
