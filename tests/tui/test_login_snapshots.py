"""Snapshots of the login screen at 80×24 and 120×40, with the QR code.

Everything that could vary is fixed: the app clock, the PKCE verifier and the state (so
the authorize URL, and its QR code, are the same every run) and the pending login's
deadline. The URL uses the production endpoints, so the QR code has its real size.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from textual.widgets import Input

from console import oauth
from console.config import AUTHORIZE_URL, REDIRECT_URI
from console.service import AuthService

from _login_host import LoginHost
from support.tui import wait_until

FROZEN = 1_900_000_000.0   # 2030-03-17, far from any real clock
STATE = "c25hcHNob3RzLW9ubHktMQ"   # 22 characters, as oauth.new_state makes
VERIFIER = "c25hcHNob3QtdmVyaWZpZXItdGhhdC1pcy1maXhlZC1zby10aGUtdXJsLWlzLXN0YWJsZQ"


@pytest.fixture
def fixed_service(settings, monkeypatch):
    monkeypatch.setattr(oauth, "new_state", lambda: STATE)
    monkeypatch.setattr(oauth, "new_verifier", lambda: VERIFIER)
    service = AuthService(settings.replace(authorize_url=AUTHORIZE_URL, redirect_uri=REDIRECT_URI))
    original = service.start_login

    async def start_login(*args, **kwargs):
        start = await original(*args, **kwargs)
        return dataclasses.replace(start, expires_at=FROZEN + service.settings.pending_ttl - 42)

    monkeypatch.setattr(service, "start_login", start_login)
    yield service
    asyncio.run(service.aclose())


async def _to_code_stage(pilot) -> None:
    await pilot.press("ctrl+u", *"ops-alice", "enter")
    await wait_until(pilot, lambda: pilot.app.screen.stage == "code", "the login screen to show the URL")
    field = pilot.app.screen.query_one("#paste", Input)
    field.cursor_blink = False
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40)], ids=["80x24", "100x30", "120x40"])
def test_login_code_stage(snap_compare, fixed_service, size):
    app = LoginHost(fixed_service, clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=size, run_before=_to_code_stage)


def test_full_screen_code_at_80x24(snap_compare, fixed_service):
    async def full_screen(pilot) -> None:
        await _to_code_stage(pilot)
        await pilot.press("f4")
        await pilot.pause()

    app = LoginHost(fixed_service, clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=(80, 24), run_before=full_screen)


def test_login_user_stage(snap_compare, fixed_service):
    async def settle(pilot) -> None:
        await pilot.pause()
        pilot.app.screen.query_one("#user-input", Input).cursor_blink = False
        await pilot.pause()

    app = LoginHost(fixed_service, user_id="ops-alice", clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)
