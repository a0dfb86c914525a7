"""Fixtures for the API: settings with a master key, the app over ASGI and over a real socket.

Every response any of these clients receives is scanned for tokens (``assert_no_tokens``),
so each test also checks that no endpoint ever leaks one.
"""

from __future__ import annotations

import httpx
import pytest

from console.api import create_api
from console.crypto import generate_key
from console.service import AuthService

from .helpers import HAVE_POSTGRES, KEY, ApiServer, scan_response

@pytest.fixture(params=["file", "postgres"])
def backend(request) -> str:
    if request.param == "postgres" and not HAVE_POSTGRES:
        pytest.skip("console/store/postgres.py does not exist yet: only the file tier is tested")
    return request.param


@pytest.fixture
def api_settings(settings):
    return settings.replace(master_key=KEY)


@pytest.fixture
def backend_settings(api_settings, backend, request):
    """The API's settings over the file tier, or over a throwaway PostgreSQL database."""
    if backend == "postgres":
        return api_settings.replace(database_url=request.getfixturevalue("pg_dsn"),
                                    encryption_key=generate_key())
    return api_settings


@pytest.fixture
async def api_service(api_settings):
    svc = AuthService(api_settings, face="api")
    yield svc
    await svc.aclose()


def asgi_client(app, client_addr: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_addr, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test",
                             event_hooks={"response": [scan_response]})


@pytest.fixture
async def make_client():
    """``make_client(service, settings, **create_api options)`` -> an httpx client over ASGI."""
    made: list[httpx.AsyncClient] = []

    def make(service, settings, client_addr: str = "127.0.0.1", **options) -> httpx.AsyncClient:
        client = asgi_client(create_api(service, settings, **options), client_addr)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(make_client, api_service, api_settings):
    return make_client(api_service, api_settings)


@pytest.fixture
def live_api(backend_settings):
    """The API on a real socket (uvicorn thread), its service made in the lifespan."""
    with ApiServer(create_api(None, backend_settings)) as server:
        yield server


@pytest.fixture
async def live_client(live_api):
    async with httpx.AsyncClient(base_url=live_api.url, event_hooks={"response": [scan_response]},
                                 timeout=30) as client:
        yield client
