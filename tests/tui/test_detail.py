"""The user detail screen: every field (tokens masked), the audit trail, and its actions."""

from __future__ import annotations

from console.app import ConsoleApp
from console.screens.board import BoardScreen
from console.screens.modals.confirm import ConfirmScreen
from console.screens.detail import DetailScreen
from console.tokens import mask
from console.widgets.board_view import BoardView

from support.screen_cells import screen_text
from support.tui import DETAIL_SIZE as SIZE
from support.tui import loaded_board, notifications, open_detail, wait_until


async def test_every_field_with_tokens_masked_and_the_audit_trail(service, login):
    await login(service, "alice", email="alice@corp.example")
    await login(service, "bob")
    stored = await service.get_record("alice")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, "alice")
        text = screen_text(app)
        assert "User alice" in text
        for label in ("status", "expires", "account", "organization", "scopes", "access token",
                      "refresh token", "source", "version", "refreshes", "last used", "created"):
            assert label in text, label
        assert "alice@corp.example" in text
        assert mask(stored.access_token) in text and mask(stored.refresh_token) in text
        assert stored.access_token not in text and stored.refresh_token not in text
        assert stored.access_token not in repr(screen.record), "the screen must not hold a token"
        assert "✓ active" in text
        assert "Audit trail" in text and "login" in text and "account alice@corp.example" in text
        assert "bob@example.com" not in text, "the audit trail is this user's only"


async def test_test_shows_whose_token_it_is(service, login):
    await login(service, "alice", email="alice@corp.example")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, "alice")
        await pilot.press("t")
        await wait_until(pilot, lambda: "it belongs to" in screen_text(app), what="the profile")
        text = screen_text(app)
        assert "the token works: it belongs to alice@corp.example" in text
        assert screen.is_current


async def test_refresh_now_updates_the_fields(service, login, emulator):
    await login(service, "alice")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, "alice")
        assert screen.record.refresh_count == 0
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.record.refresh_count == 1, what="the refreshed record")
        assert emulator.stats()["refresh_requests"] == 1
        assert any("alice: refreshed" in n for n in notifications(app))
        await wait_until(pilot, lambda: "refresh" in [e.action for e in screen.events],
                         what="the refresh in the audit trail")


async def test_logout_confirms_then_returns_to_the_board(service, login):
    await login(service, "alice")
    await login(service, "bob")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(pilot, "alice")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
        assert await service.get_record("alice") is not None
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")
        assert await service.get_record("alice") is None
        board = app.screen.query_one(BoardView)
        await wait_until(pilot, lambda: board.view == ["bob"], what="alice to leave the board")


async def test_a_user_logged_out_elsewhere_says_so(service, login, monkeypatch):
    import console.screens.board as board_screen

    monkeypatch.setattr(board_screen, "WATCH_EVERY", 60.0)   # no poll removes alice before enter
    await login(service, "alice")
    app = ConsoleApp(service, refresh_interval=5)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        await service.logout("alice")      # gone before the board polled again
        assert board.selected_user_id == "alice"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
        await wait_until(pilot, lambda: app.screen.loaded, what="the load")
        await pilot.pause()
        assert "is not logged in" in screen_text(app)
        await pilot.press("t")
        await wait_until(pilot, lambda: "test failed" in screen_text(app), what="the test result")
        assert "not logged in" in screen_text(app)


async def test_audit_durations_are_in_words_and_nothing_is_cut_mid_word(service, login, emulator):
    await login(service, "alice", email="alice.with.a.long.address@corp.example")
    await service.refresh("alice", force=True)
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=(80, 60)) as pilot:
        screen = await open_detail(pilot, "alice")
        await wait_until(pilot, lambda: "refresh" in [e.action for e in screen.events], what="the audit")
        await pilot.pause()
        text = screen_text(app)
        audit = text[text.index("Audit trail"):]
        refresh_row = next(line for line in audit.splitlines() if " refresh " in line)
        assert "expires in 7h 59m" in refresh_row or "expires in 8h 00m" in refresh_row, refresh_row
        assert "28799s" not in text and "28800s" not in text
        words = set("alice.with.a.long.address@corp.example".split())
        for line in audit.splitlines():
            for word in line.split():
                if "@" in word and "alice" in word:
                    assert word.strip("()") in words, f"{word!r} is cut: {line!r}"
