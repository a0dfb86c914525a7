"""The loopback listener in process: Claude's error redirect, a busy port, a code refused."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from console.errors import ConsoleError, LoginError
from console.loopback import LoopbackListener, login_by_loopback


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url.replace("//localhost:", "//127.0.0.1:"))


async def test_an_error_redirect_ends_the_login_with_claudes_words(service, emulator):
    listener = await LoopbackListener().open()
    started = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(login_by_loopback(service, "alice", listener, on_start=started.set_result))
    start = await started
    page = await get(f"{listener.redirect_uri}?error=access_denied&error_description=The+user+said+no"
                     f"&state={start.state}")
    assert page.status_code == 400 and "The user said no" in page.text
    with pytest.raises(LoginError, match="Claude did not approve the login: The user said no"):
        await waiting
    assert await service.get_record("alice") is None


async def test_a_refused_code_is_one_line_on_the_page_and_the_terminal(service, emulator):
    listener = await LoopbackListener().open()
    started = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(login_by_loopback(service, "bob", listener, on_start=started.set_result))
    start = await started
    page = await get(f"{listener.redirect_uri}?code=wrong&state={start.state}")
    assert page.status_code == 400 and "Invalid &#x27;code&#x27; in request." in page.text
    with pytest.raises(ConsoleError, match="the code was rejected"):
        await waiting


async def test_a_busy_port_is_one_line():
    first = await LoopbackListener().open()
    try:
        with pytest.raises(ConsoleError, match=f"cannot listen on 127.0.0.1:{first.port} .*pick another --port"):
            await LoopbackListener(first.port).open()
    finally:
        await first.close()
