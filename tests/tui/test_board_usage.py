"""The board's PLAN, 5H and 7D columns: percentages with a bar, readable without colour,
sortable, filter terms (5h>80, plan:max), the header count of users at >= 80 %, the detail."""

from __future__ import annotations

from console.app import ConsoleApp
from console.usage import usage_term, UsageCells

from support.screen_cells import screen_text
from support.tui import loaded_board, open_detail, wait_until

SIZE = (160, 72)


async def setup_users(service, login, emulator):
    emulator.state.configure(profile_shape="email", usage_by_email={
        "ada@example.com": {"five_hour": 96, "seven_day": 20},
        "bob@example.com": {"five_hour": 12, "seven_day": 85},
        "cy@example.com": {"five_hour": 50, "seven_day": 10, "surprise_window": 4}},
        plan_by_email={"bob@example.com": {"organization_type": "claude_pro", "rate_limit_tier": "default_claude_pro"}})
    for uid in ("ada", "bob", "cy"):
        await login(service, uid)
        await service.usage(uid, fresh=True)


async def test_board_shows_sorts_and_filters_usage(service, login, emulator):
    await setup_users(service, login, emulator)
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        await wait_until(pilot, lambda: board.usage_of("ada") is not None and board.usage_of("ada").p5h == 96,
                         what="usage on the board")
        text = screen_text(app)
        header = text.splitlines()
        assert any("PLAN" in line and "5H" in line and "7D" in line for line in header)
        ada = next(line for line in header if "ada@example.com" in line)
        assert "96%!!" in ada and "20%" in ada and "Max 20x" in ada   # readable without colour
        bob = next(line for line in header if "bob@example.com" in line)
        assert "85%!" in bob and "Pro" in bob
        assert "2 at ≥80% usage" in text
        await pilot.press("u")      # sort by 5h usage, ascending
        assert board.view == ["bob", "cy", "ada"]
        await pilot.press("u")      # again: reversed
        assert board.view == ["ada", "cy", "bob"]
        await pilot.press("w")
        assert board.view == ["cy", "ada", "bob"]
        board.set_filter("5h>80")
        assert board.view == ["ada"]
        board.set_filter("plan:max")
        assert sorted(board.view) == ["ada", "cy"]
        board.set_filter("plan:pro 7d>=85")
        assert board.view == ["bob"]
        board.set_filter("")
        detail = await open_detail(pilot, "cy")
        await wait_until(pilot, lambda: "surprise_window" in screen_text(app), what="the detail's windows")
        shown = screen_text(app)
        assert "5h" in shown and "50%" in shown and "resets in" in shown and "Max 20x" in shown
        assert "fetched" in shown and "pid" in shown
        assert detail is not None


def test_usage_terms():
    cells = UsageCells("Max 20x", 96.0, 20.0, 96.0)
    assert usage_term("5h>80")(cells) and not usage_term("7d>80")(cells)
    assert usage_term("any>=95")(cells) and usage_term("plan:max20x")(cells)
    assert not usage_term("5h>80")(UsageCells())
    assert usage_term("alice") is None and usage_term("5h") is None


async def test_without_a_refresher_the_board_asks_for_the_users_on_screen_once(service, login, emulator,
                                                                             monkeypatch):
    """No refresher runs: the board asks Claude for the usage of the rows it shows (and no
    others), once per user within ``usage_interval``, under the shared lease."""
    import console.screens.board as board_screen

    monkeypatch.setattr(board_screen, "USAGE_EVERY", 0.3)  # re-read often: it must still ask only once
    emulator.state.configure(profile_shape="email")
    users = [f"u{i:02d}" for i in range(30)]
    for uid in users:
        await login(service, uid)
    asked_at_login = emulator.state.usage_counts()
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=(100, 16)) as pilot:   # a short screen: most rows are off it
        board = await loaded_board(pilot)
        shown = list(board.on_screen())
        assert 0 < len(shown) < len(users)

        def asked() -> dict[str, int]:
            counts = emulator.state.usage_counts()
            return {email.split("@")[0]: n - asked_at_login.get(email, 0) for email, n in counts.items()}

        await wait_until(pilot, lambda: {uid for uid, n in asked().items() if n} >= set(shown),
                         timeout=15, what="a usage request for every row on screen")
        await wait_until(pilot, lambda: all(board.usage_of(uid) is not None for uid in shown),
                         timeout=15, what="usage for every row on screen")
        await pilot.pause(1.0)   # several more usage reads: none may ask again
    asked = asked()
    assert {uid for uid, n in asked.items() if n} == set(shown)
    assert all(n == 1 for uid, n in asked.items() if uid in shown), asked
