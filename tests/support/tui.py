"""Driving the Textual app in tests: wait on the pilot, reach the loaded board, read notices."""

from __future__ import annotations

from console.screens.detail import DetailScreen
from console.widgets.board_view import BoardView

from .screen_cells import screen_text
from .waiting import wait_for


async def wait_until(pilot, condition, what: str = "the condition", timeout: float = 5.0) -> None:
    """``wait_for`` paced by the pilot (the app keeps running), the screen shown on a timeout."""
    await wait_for(condition, timeout, what=what, pause=pilot.pause, show=lambda: screen_text(pilot.app))


async def loaded_board(pilot) -> BoardView:
    board = pilot.app.screen.query_one(BoardView)
    await wait_until(pilot, lambda: board.loaded, what="the first poll")
    await pilot.pause()
    return board


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


DETAIL_SIZE = (120, 50)


async def open_detail(pilot, user_id: str) -> DetailScreen:
    app = pilot.app
    board = await loaded_board(pilot)
    board.select_user(user_id)
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
    screen = app.screen
    await wait_until(pilot, lambda: screen.loaded, what="the record")
    await pilot.pause()
    return screen
