"""``claude-console web`` in a real headless browser: Chromium from the distribution, driven
by Playwright (its bundled driver; the browser is the system's, never a download).

The terminal is drawn on a canvas, so what the console shows is read from the websocket
that carries it to the page (the same bytes the page draws). Skipped with the reason where
no browser can be had; under CI=true that is a failure (.ci/run installs chromium).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .helpers import SCRIPT

pytestmark = pytest.mark.e2e

IN_CI = os.environ.get("CI", "").lower() == "true"
KEY = "sk-web-e2e-master-key-0123456789"
ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;:?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b.")
QR_CHARS = set("▀▄█") | {chr(c) for c in range(0x1FB00, 0x1FB3C)}


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires it)")
    pytest.skip(message)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    _unavailable("no Chromium here (apt-get install chromium): the browser end-to-end test needs it")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(base: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"claude-console web exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base}/login", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("claude-console web did not answer within 30 s")


class Screen:
    """Everything the console sent to the page, as text (escape sequences removed)."""

    def __init__(self) -> None:
        self.raw = ""
        self.sockets = 0

    def attach(self, websocket) -> None:
        self.sockets += 1
        websocket.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", errors="replace")
        self.raw += payload

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)

    async def wait_for(self, page, predicate, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {what}; it received:\n{self.text[-3000:]}")
            await page.wait_for_timeout(100)


async def test_the_console_in_a_headless_browser(console_env, service, login):
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    browser_path = _chromium()
    await login(service, "web-alice", email="web-alice@example.com")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "console"]
    proc = subprocess.Popen([*command, "web", "--host", "127.0.0.1", "--port", str(port)],
                            env={**os.environ, "LITELLM_MASTER_KEY": KEY, "TERM": "xterm-256color"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_server(base, proc)
        async with async_playwright() as playwright:
            try:
                browser = await playwright.chromium.launch(
                    executable_path=browser_path, headless=True,
                    args=["--no-sandbox", "--disable-dev-shm-usage"])
            except Exception as exc:  # a browser that cannot start here is the same as none
                _unavailable(f"Chromium at {browser_path} does not start: {str(exc).splitlines()[0]}")
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                screen = Screen()
                page.on("websocket", screen.attach)

                # A wrong key never gets past the sign-in page.
                await page.goto(f"{base}/")
                assert page.url == f"{base}/login"
                await page.fill("#key", "not-the-master-key")
                await page.click("input[type=submit]")
                await page.wait_for_load_state()
                assert "That is not the master key." in await page.content()
                await page.goto(f"{base}/")
                assert page.url == f"{base}/login" and screen.sockets == 0

                # The right key: the board, with the logged-in user.
                await page.fill("#key", KEY)
                await page.click("input[type=submit]")
                await page.wait_for_url(f"{base}/")
                await screen.wait_for(page, lambda t: "web-alice" in t and "active" in t,
                                      "the board with web-alice active", timeout=30)

                # l: the login screen; enter starts a login; the QR code is drawn.
                await page.locator(".textual-terminal").click()
                await page.keyboard.press("l")
                await screen.wait_for(page, lambda t: "Log in a user" in t, "the login screen")
                before = len(screen.text)
                await page.keyboard.press("Enter")
                await screen.wait_for(page, lambda t: "Scan the QR code" in t[before:]
                                      and QR_CHARS & set(t[before:]), "the login screen with the code")
                assert "/oauth/authorize?" in screen.text[before:]
            finally:
                await browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
