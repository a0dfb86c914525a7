"""``claude-console web``: textual-serve behind the master key (sign-in page, session cookie,
bearer header for scripts, same-origin websocket)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from console.api.web import COOKIE, WebGate, make_server
from console.errors import UsageError

from .helpers import KEY

# A stand-in for the TUI: the websocket test only needs a process to start.
COMMAND = f"{sys.executable} -c \"import time; time.sleep(0.2)\""


@pytest.fixture
async def web():
    gate = WebGate(KEY, login_burst=5, login_per_minute=1)
    server = make_server(COMMAND, gate, host="127.0.0.1", port=0)
    test_server = TestServer(await server._make_app(), host="127.0.0.1")
    await test_server.start_server()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield test_server, session
    await test_server.close()


async def _sign_in(test_server, session, key=KEY):
    return await session.post(test_server.make_url("/login"), data={"key": key}, allow_redirects=False)


async def test_nothing_but_the_sign_in_page_without_a_session(web):
    server, session = web
    index = await session.get(server.make_url("/"), allow_redirects=False)
    assert index.status == 303 and index.headers["Location"] == "/login"
    for path in ("/static/js/textual.js", "/download/x", "/ws"):
        response = await session.get(server.make_url(path), allow_redirects=False)
        assert response.status == 401, path
    page = await session.get(server.make_url("/login"))
    assert page.status == 200 and 'type="password"' in await page.text()
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


async def test_signing_in_with_the_master_key_gives_a_strict_session_cookie(web):
    server, session = web
    wrong = await _sign_in(server, session, "not-the-key")
    assert wrong.status == 401 and "not the master key" in await wrong.text()
    assert COOKIE not in wrong.cookies
    right = await _sign_in(server, session)
    assert right.status == 303 and right.headers["Location"] == "/"
    morsel = right.cookies[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    cookie = {"Cookie": f"{COOKIE}={morsel.value}"}

    index = await session.get(server.make_url("/"), headers=cookie)
    assert index.status == 200 and "/ws" in await index.text()
    assert index.headers["X-Frame-Options"] == "DENY"
    forged = await session.get(server.make_url("/"), headers={"Cookie": f"{COOKIE}=forged"},
                               allow_redirects=False)
    assert forged.status == 303

    out = await session.post(server.make_url("/logout"), headers=cookie, allow_redirects=False)
    assert out.status == 303
    after = await session.get(server.make_url("/"), headers=cookie, allow_redirects=False)
    assert after.status == 303  # the session is gone from the server, not only from the browser


async def test_scripts_may_send_the_bearer_key(web):
    server, session = web
    ok = await session.get(server.make_url("/"), headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status == 200
    bad = await session.get(server.make_url("/static/js/textual.js"), headers={"Authorization": "Bearer nope"})
    assert bad.status == 401


async def test_the_websocket_needs_a_session_and_this_origin(web):
    server, session = web
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(server.make_url("/ws"))
    assert refused.value.status == 401
    cookie = {"Cookie": f"{COOKIE}={(await _sign_in(server, session)).cookies[COOKIE].value}"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as cross:
        await session.ws_connect(server.make_url("/ws"), headers={**cookie, "Origin": "https://evil.example"})
    assert cross.value.status == 403
    origin = f"http://{server.host}:{server.port}"
    ws = await session.ws_connect(server.make_url("/ws"), headers={**cookie, "Origin": origin})
    assert not ws.closed
    await ws.close()
    await asyncio.sleep(0.5)  # let textual-serve stop the stand-in app before the loop closes


async def test_sign_in_attempts_are_rate_limited(web):
    server, session = web
    codes = [(await _sign_in(server, session, f"guess-{i}")).status for i in range(7)]
    assert codes == [401] * 5 + [429] * 2
    blocked = await _sign_in(server, session)  # even the right key waits: no oracle while limited
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) >= 1


def test_web_refuses_to_start_without_a_master_key(settings):
    from console.api.web import run_web

    with pytest.raises(UsageError, match="no master key"):
        run_web(settings.replace(master_key=""), host="127.0.0.1", port=0)
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_MASTER_KEY"}
    result = subprocess.run([sys.executable, "-m", "console", "web", "--host", "0.0.0.0",
                             "--insecure-no-auth"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "loopback" in result.stderr
