"""The board says, in words, which users' new token is held locally and not yet stored (the
store refused the rotated token; it is kept in memory and the rescue journal until it lands)."""

from __future__ import annotations

import time

from console.app import ConsoleApp
from console.errors import StorageError
from console.service import Held
from console.widgets.board_view import BoardView
from console.widgets.status_badge import HELD_LABEL

from support.screen_cells import screen_text


async def _wait(pilot, condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{screen_text(pilot.app)}")
        await pilot.pause(0.02)


async def test_held_users_are_marked_with_a_word(service, login):
    await login(service, "alice")
    await login(service, "bob")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        board = app.screen.query_one(BoardView)
        await _wait(pilot, lambda: board.loaded, "the first poll")
        assert HELD_LABEL not in screen_text(app)
        # The store refused bob's rotated token: the service holds it (as _hold does).
        stored = await service.store.get_fresh("bob")
        service._held["bob"] = Held(stored.evolve(refresh_count=stored.refresh_count + 1), stored.version, None,
                                    StorageError("disk full").message)
        await _wait(pilot, lambda: HELD_LABEL in screen_text(app), "the held mark")
        rows = [line for line in screen_text(app).splitlines() if "example.com" in line]
        assert [row for row in rows if HELD_LABEL in row] == [r for r in rows if "bob" in r]
        del service._held["bob"]  # it landed
        await _wait(pilot, lambda: HELD_LABEL not in screen_text(app), "the mark to go")
