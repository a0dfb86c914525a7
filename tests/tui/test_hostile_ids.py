"""Ids that look like markup or hold control characters are shown as text on every screen."""

from __future__ import annotations

import time

from console.app import ConsoleApp
from console.screens.modals.confirm import ConfirmScreen
from console.tokens import TokenRecord

from support.screen_cells import screen_text
from support.tui import DETAIL_SIZE as SIZE
from support.tui import loaded_board, notifications, open_detail, wait_until


async def test_markup_in_an_id_is_shown_as_text(service, login):
    await login(service, "a[/]b")
    await login(service, "[bold]x[/bold]")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, "a[/]b")
        assert "User a[/]b" in screen_text(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: any("a[/]b: refreshed" in n for n in notifications(app)),
                         what="the refresh notification")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        assert "Log out user 'a[/]b'?" in screen_text(app)
        await pilot.press("n")
        await pilot.press("escape")
        screen = await open_detail(pilot, "[bold]x[/bold]")
        assert "User [bold]x[/bold]" in screen_text(app)


async def test_control_characters_in_a_stored_id_are_escaped(service):
    # An id stored before the rule existed (or by hand): the board and the detail still draw it.
    now = time.time()
    await service._save_tokens("evil\x1b[2J\x9b", TokenRecord(user_id="evil\x1b[2J\x9b", access_token="sk-ant-oat01-" + "a" * 40,
                                                              expires_at=now + 3600, created_at=now))
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        text = screen_text(app)
        assert "evil\\x1b[2J\\x9b" in text and "\x1b" not in text and "\x9b" not in text
        board.select_user("evil\x1b[2J\x9b")
        await pilot.press("enter")  # the service refuses the id: said in one notification, no crash
        await wait_until(pilot, lambda: any("contains control characters" in n for n in notifications(app)),
                         what="the refusal")
        text = screen_text(app)
        assert "User evil\\x1b[2J\\x9b" in text and "\x1b" not in text and "\x9b" not in text
