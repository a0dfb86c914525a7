"""Snapshots of the board and the detail screen at 80x24 and 120x40.

The data is fixed (written straight into a temporary file store with set times) and the
app's clock is frozen, so countdowns and "ago" columns never move between runs. Update
with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import asyncio

import pytest

from console.app import ConsoleApp
from console.screens.detail import DetailScreen
from console.service import AuthService
from console.store import AuditEvent
from console.tokens import TokenRecord
from console.widgets.board_view import BoardView

from support.tui import wait_until

NOW = 1_750_000_000.0          # 2025-06-15 15:06:40 UTC
SCOPES = ["user:inference", "user:profile", "org:create_api_key", "user:sessions:claude_code"]
SIZES = [(80, 24), (120, 40)]


def _record(uid: str, *, expires_in: float, email: str | None, refresh: bool = True,
            needs_login: bool = False, refreshes: int = 0, used_ago: float | None = None,
            error: str | None = None) -> TokenRecord:
    return TokenRecord(
        user_id=uid, access_token=f"sk-ant-oat01-{uid}-access-0000-{uid[:2]}AB",
        refresh_token=f"sk-ant-ort01-{uid}-refresh-0000-{uid[:2]}CD" if refresh else None,
        expires_at=NOW + expires_in, scopes=list(SCOPES), account_email=email,
        account_uuid=f"acc-{uid}", organization_uuid=f"org-{uid[:1]}", organization_name="Example Ops",
        subscription_type="max", created_at=NOW - 30 * 86400, updated_at=NOW - 3600,
        last_used=NOW - used_ago if used_ago is not None else None, refresh_count=refreshes,
        last_refresh_at=NOW - 3600 if refreshes else None, needs_login=needs_login,
        last_refresh_error=error, last_refresh_error_at=NOW - 600 if error else None,
        refresh_failures=1 if error else 0)


RECORDS = [
    _record("alice", expires_in=7 * 3600 + 1234, email="alice@example.com", refreshes=12, used_ago=42),
    _record("bob", expires_in=190, email="bob@corp.example", refreshes=3, used_ago=3600 * 5),
    _record("carol", expires_in=-900, email="carol@example.com", refreshes=40, used_ago=86400 * 2),
    _record("dave", expires_in=-60, email=None, refresh=False),
    _record("erin", expires_in=1800, email="erin@example.com", needs_login=True, refreshes=7,
            used_ago=600, error="invalid_grant: Refresh token not found or invalid"),
    _record("frank-with-a-long-user-id", expires_in=3 * 86400, email="frank.long.name@subsidiary.example",
            refreshes=1, used_ago=5),
]

EVENTS = [
    AuditEvent("login", "alice", True, "account alice@example.com", "tui:ops@console", NOW - 30 * 86400),
    AuditEvent("refresh", "alice", True, "expires in 28800s", "sdk:litellm@proxy-1", NOW - 3600),
    AuditEvent("refresh_failed", "alice", False, "rate limited (HTTP 429), retried 3 times",
               "sdk:litellm@proxy-2", NOW - 1800),
]


@pytest.fixture
def frozen_app(settings):
    """The app over a store holding exactly RECORDS and EVENTS, with the clock at NOW."""
    service = AuthService(settings, face="tui")

    async def seed() -> None:
        await service.store.primary.put_many(RECORDS)
        for event in EVENTS:
            await service.store.append_audit(event)
        for record in RECORDS:   # the usage lease taken far ahead: the board asks Claude nothing
            await service.store.claim_fetch(record.user_id, interval=10 ** 9, owner="snapshot")

    asyncio.run(seed())
    yield ConsoleApp(service, clock=lambda: NOW, refresh_interval=0.5)
    asyncio.run(service.aclose())


async def _board_ready(pilot) -> BoardView:
    board = pilot.app.screen.query_one(BoardView)
    await wait_until(pilot, lambda: board.loaded, "the first poll", 10.0)
    await pilot.pause()
    return board


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_board(snap_compare, frozen_app, size):
    assert snap_compare(frozen_app, terminal_size=size, run_before=_board_ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_board_filtered(snap_compare, frozen_app, size):
    async def filtered(pilot) -> None:
        await _board_ready(pilot)
        await pilot.press("slash", "e", "x", "p", "enter")

    assert snap_compare(frozen_app, terminal_size=size, run_before=filtered)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail(snap_compare, frozen_app, size):
    async def open_alice(pilot) -> None:
        board = await _board_ready(pilot)
        board.select_user("alice")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.loaded,
                         "the detail screen to load", 10.0)
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=size, run_before=open_alice)
