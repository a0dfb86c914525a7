"""The board, driven as an operator would: keys in, screen and store checked.

Every test runs the real app against the provider emulator over HTTP and a temporary
file store (the ``service`` and ``login`` fixtures).
"""

from __future__ import annotations

import time

import pytest
from textual import events
from textual.command import CommandPalette
from textual.widgets import Input

from console.app import ConsoleApp
from console.screens.backup import BackupScreen
from console.screens.board import BoardScreen
from console.screens.modals.confirm import ConfirmScreen
from console.screens.detail import DetailScreen
from console.screens.modals.help import HelpScreen
from console.screens.restore import RestoreScreen
from console.tokens import Status, TokenRecord
from console.widgets.board_view import BoardView
from console.widgets.health_bar import HealthBar

from support.screen_cells import screen_cells, screen_text
from support.tui import loaded_board, notifications, wait_until

SIZE = (120, 40)


def app_for(service, **kwargs) -> ConsoleApp:
    kwargs.setdefault("refresh_interval", 0.2)
    return ConsoleApp(service, **kwargs)


async def test_rows_appear_for_logged_in_users(service, login):
    await login(service, "alice")
    await login(service, "bob", email="bob@corp.example")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        assert sorted(board.view) == ["alice", "bob"]
        text = screen_text(app)
        assert "bob@corp.example" in text and "alice@example.com" in text
        rows = [line for line in text.splitlines() if "@" in line]
        assert len(rows) == 2 and all("✓ active" in row for row in rows)
        assert "2 users: 2 ✓ active" in text
        health = app.screen.query_one(HealthBar)
        assert dict(health.counts)[Status.ACTIVE] == 2
        assert "file up" in text and "database off" in text


async def test_new_users_appear_live_and_the_cursor_stays(service, login):
    await login(service, "bob")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        assert board.selected_user_id == "bob"
        await login(service, "aaron")      # another face (or process) logs someone in
        await wait_until(pilot, lambda: "aaron" in board.view, what="the live poll to show aaron")
        assert board.view == ["aaron", "bob"] or board.view == ["bob", "aaron"]
        assert board.selected_user_id == "bob", "the cursor must follow its user, not its row"


async def test_refresh_selected_user(service, login, emulator):
    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_board(pilot)
        await pilot.press("r")
        await wait_until(pilot, lambda: any("alice: refreshed" in n for n in notifications(app)),
                         what="the refresh to finish")
        assert emulator.stats()["refresh_requests"] == 1
        assert (await service.get_record("alice")).refresh_count == 1


async def test_refresh_all_runs_in_a_worker_with_progress(service, login, emulator):
    for uid in ("u1", "u2", "u3"):
        await login(service, uid)
    emulator.state.configure(latency_ms=1500)  # long enough to see the progress bar on a busy machine
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_board(pilot)
        screen = app.screen
        await pilot.press("R")
        await wait_until(pilot, lambda: screen.has_class("-working"), what="the progress bar")
        assert "Refreshing" in screen_text(app)
        await wait_until(pilot, lambda: any(n.startswith(("Refreshed", "Stopped")) for n in notifications(app)),
                         timeout=15, what="refresh all to finish")
        assert any("Refreshed all 3 users" in n for n in notifications(app)), notifications(app)
        assert not screen.has_class("-working")
    assert emulator.stats()["refresh_requests"] == 3
    for uid in ("u1", "u2", "u3"):
        assert (await service.get_record(uid)).refresh_count == 1


async def test_refresh_failure_is_a_one_line_notification(service, login, emulator):
    await login(service, "bob", email="bob@example.com")
    emulator.state.revoke(email="bob@example.com")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        await pilot.press("r")
        await wait_until(pilot, lambda: any("refresh failed" in n for n in notifications(app)),
                         what="the failure notification")
        message = next(n for n in notifications(app) if "refresh failed" in n)
        assert "\n" not in message and "Traceback" not in message
        assert "log in again" in message
        assert "press l to log the user in again" in message and "claude-console" not in message
        await wait_until(pilot, lambda: board.status_of("bob") is Status.NEEDS_LOGIN,
                         what="bob to show as needs login")
        assert "✗ needs login" in screen_text(app)
        assert app.is_running


async def test_logout_asks_first_and_cancel_keeps_the_user(service, login):
    await login(service, "alice")
    await login(service, "bob")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        board.select_user("bob")
        for cancel in ("n", "escape"):
            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
            assert "Log out user 'bob'?" in screen_text(app)
            await pilot.press(cancel)
            await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")
            assert await service.get_record("bob") is not None
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "bob" not in board.view, what="bob to leave the board")
        assert await service.get_record("bob") is None
        assert await service.get_record("alice") is not None
        assert board.view == ["alice"]


async def test_filter_as_you_type_and_escape_clears(service, login):
    for uid in ("alice", "bob", "carol"):
        await login(service, uid)
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        board.select_user("carol")
        await pilot.press("slash")
        assert app.focused is app.screen.query_one("#filter", Input)
        await pilot.press("c", "a")
        await pilot.pause()
        assert board.view == ["carol"]
        assert board.selected_user_id == "carol"
        assert "filter “ca”" in screen_text(app)
        await pilot.press("q", "backspace")        # keys typed into the filter are text, not commands
        assert app.is_running
        await pilot.press("backspace", "backspace", "b", "o")
        await pilot.pause()
        assert board.view == ["bob"]
        await pilot.press("enter")                 # keep the filter, back to the rows
        assert app.focused is board and board.filter_text == "bo"
        await pilot.press("escape")
        await pilot.pause()
        assert sorted(board.view) == ["alice", "bob", "carol"]
        assert board.selected_user_id == "carol", "the cursor returns to its user after the filter"


async def test_typing_a_filter_lays_the_screen_out_only_when_the_rows_need_it(service, login, monkeypatch):
    """A key typed into the filter repaints the field and the rows; it does not lay the whole
    screen out again (9 ms a key at 120x40) when the rows stay. A filter longer than the field
    still scrolls so that its end, where the cursor is, shows."""
    from textual.screen import Screen

    for uid in ("alice", "bob", "carol"):
        await login(service, uid)
    layouts = []
    original = Screen._refresh_layout
    monkeypatch.setattr(Screen, "_refresh_layout", lambda self, *a, **k: (layouts.append(1), original(self, *a, **k)))
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        await pilot.press("slash")
        await pilot.pause()
        field = app.screen.query_one("#filter", Input)
        before = len(layouts)
        await pilot.press(*"example")                     # every row holds it: the rows stay
        await pilot.pause()
        assert board.filter_text == "example" and len(board.view) == 3
        assert len(layouts) == before, "a key that keeps the rows must not lay the screen out"
        await pilot.press(*(" " + "x" * 150))
        await pilot.pause()
        assert field.value.endswith("x" * 150) and field.scroll_x > 0
        assert field.cursor_screen_offset.x < field.region.right, "the end of the filter shows"
        assert "xxxxxxxx" in screen_text(app) and board.view == []


async def test_filter_survives_live_updates(service, login):
    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        await pilot.press("slash", "b", "o", "enter")
        assert board.view == []
        await login(service, "bob")
        await login(service, "zed")
        await wait_until(pilot, lambda: board.total == 3, what="the poll to bring bob and zed")
        assert board.view == ["bob"] and board.filter_text == "bo"


async def test_sort_keys(service):
    now = time.time()
    records = [
        TokenRecord("b-expiring", "sk-ant-oat01-xxxxxxxx1", "sk-ant-ort01-yyyyyyyy1", now + 120,
                    account_email="z@example.com", refresh_count=5),
        TokenRecord("a-active", "sk-ant-oat01-xxxxxxxx2", "sk-ant-ort01-yyyyyyyy2", now + 7200,
                    account_email="m@example.com", refresh_count=1),
        TokenRecord("c-rejected", "sk-ant-oat01-xxxxxxxx3", "sk-ant-ort01-yyyyyyyy3", now + 7200,
                    account_email="a@example.com", needs_login=True, refresh_count=9),
    ]
    await service.store.primary.put_many(records)
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        # Default: most urgent first.
        assert board.view == ["c-rejected", "b-expiring", "a-active"]
        await pilot.press("1")
        assert board.view == ["a-active", "b-expiring", "c-rejected"]
        await pilot.press("1")
        assert board.view == ["c-rejected", "b-expiring", "a-active"]
        await pilot.press("2")
        assert board.view == ["c-rejected", "a-active", "b-expiring"]
        await pilot.press("6")
        assert board.view == ["a-active", "b-expiring", "c-rejected"]
        await pilot.press("s")                     # next column after refreshes: source
        assert board.sort_key == "source"
        assert "sorted by source" in screen_text(app)
        # The mouse: a column title sorts (the board has a one-line border on top, then titles).
        await pilot.click(BoardView, offset=(3, 1))
        assert board.sort_key == "user" and board.view == ["a-active", "b-expiring", "c-rejected"]
        await pilot.click(BoardView, offset=(3, 3), times=2)   # double-click the second row
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
        assert app.screen.user_id == "b-expiring"


async def test_enter_opens_detail_and_escape_returns(service, login):
    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_board(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
        assert app.screen.user_id == "alice"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")


async def test_help_lists_the_keys_of_the_board(service, login):
    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=(100, 50)) as pilot:
        await loaded_board(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = screen_text(app)
        for line in ("Log a user in", "Refresh every user shown", "Log the selected user out",
                     "Filter as you type", "Sort by user", "Back up the stored tokens",
                     "✗ needs login"):
            assert line in text, line
        keys = dict(app.screen.rows)
        assert keys["R"].startswith("Refresh every user") and keys["d del"].startswith("Log the selected")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")


async def test_command_palette_runs_board_actions(service, login, emulator):
    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_board(pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"refresh every")
        await wait_until(pilot, lambda: "Refresh every user shown" in screen_text(app), what="the hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: emulator.stats()["refresh_requests"] == 1,
                         what="the palette to run refresh all")


async def test_backup_and_restore_are_reachable(service):
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_board(pilot)
        for key, screen_type, title in (("b", BackupScreen, "Back up every user's tokens"),
                                        ("o", RestoreScreen, "Restore tokens from a backup")):
            await pilot.press(key)
            await wait_until(pilot, lambda: isinstance(app.screen, screen_type), what=key)
            assert title in screen_text(app)
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")


async def test_empty_store_and_sandbox_header(service):
    app = app_for(service, sandbox_url="http://127.0.0.1:9")
    async with app.run_test(size=(80, 24)) as pilot:
        board = await loaded_board(pilot)
        assert board.view == []
        text = screen_text(app)
        assert "SANDBOX" in text and "EMULATOR" in text
        assert app.has_class("-sandbox")           # styles/shared.tcss paints the header
        assert "No users are logged in" in text
        await pilot.press("r")
        await pilot.pause()
        assert any("No user is selected" in n for n in notifications(app))


async def test_log_in_through_the_ui(service, login, emulator):
    pytest.importorskip("console.screens.login")
    app = app_for(service)
    async with app.run_test(size=(160, 50)) as pilot:
        board = await loaded_board(pilot)
        await pilot.press("l")
        screen = app.screen
        assert type(screen).__name__ == "LoginScreen"
        user_input = screen.query_one("#user-input", Input)
        user_input.value = ""
        await pilot.press(*"dana", "enter")
        await wait_until(pilot, lambda: getattr(screen, "start", None) is not None, what="the login URL")
        approved = emulator.approve(screen.start.authorization_url, email="dana@example.com")
        paste = screen.query_one("#paste", Input)
        paste.focus()
        paste.post_message(events.Paste(approved["pasted"]))   # what a terminal paste delivers
        await wait_until(pilot, lambda: paste.value == approved["pasted"], what="the pasted code")
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(screen, "record", None) is not None, timeout=10,
                         what="the exchange")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")
        await wait_until(pilot, lambda: "dana" in board.view, what="dana's row")
        assert board.selected_user_id == "dana"
        assert board.status_of("dana") is Status.ACTIVE
        assert "dana@example.com" in screen_text(app)


async def test_readable_without_colour(service, login, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    await login(service, "alice")
    await login(service, "bob")
    app = app_for(service)
    async with app.run_test(size=(80, 24)) as pilot:
        board = await loaded_board(pilot)
        assert app.no_color
        board.select_user("bob")
        await pilot.pause()
        cells = screen_cells(app)
        rows = {"".join(ch for ch, _ in row).split()[0]: row for row in cells
                if "".join(ch for ch, _ in row).strip().startswith(("alice", "bob"))}
        assert set(rows) == {"alice", "bob"}
        # Words carry the status; the cursor is drawn in reverse video, not in a colour.
        assert all("✓ active" in "".join(ch for ch, _ in row) for row in rows.values())
        assert all(style.reverse for ch, style in rows["bob"][1:10])
        assert not any(style.reverse for ch, style in rows["alice"][1:10])


async def test_space_marks_rows_and_d_logs_out_the_marked_ones_after_one_question(service, login):
    for uid in ("alice", "bob", "carol", "dora"):
        await login(service, uid)
    app = app_for(service)
    async with app.run_test(size=(80, 24)) as pilot:
        board = await loaded_board(pilot)
        board.select_user("alice")
        await pilot.press("space")            # marks alice, moves down
        assert board.marked == ["alice"]
        board.select_user("carol")
        await pilot.press("space", "space")   # carol and the row after her
        marked = list(board.marked)
        assert len(marked) == 3 and marked[:2] == ["alice", "carol"]
        assert "3 marked" in screen_text(app)
        rows = [line for line in screen_text(app).splitlines() if line.startswith("●")]
        assert len(rows) == 3
        await pilot.press("escape")           # esc clears the marks, nothing else happens
        assert board.marked == [] and isinstance(app.screen, BoardScreen)
        board.select_user("alice")
        await pilot.press("space")
        board.select_user("bob")
        await pilot.press("space")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        text = screen_text(app)
        assert "Log out 2 users marked?" in text and "alice, bob" in text
        await pilot.press("y")
        await wait_until(pilot, lambda: sorted(board.view) == ["carol", "dora"], what="the logouts")
    assert await service.get_record("alice") is None and await service.get_record("bob") is None
    assert await service.get_record("carol") is not None


async def test_r_refreshes_the_marked_rows(service, login, emulator):
    for uid in ("alice", "bob", "carol"):
        await login(service, uid)
    before = {uid: (await service.get_record(uid)).refresh_count for uid in ("alice", "bob", "carol")}
    app = app_for(service)
    async with app.run_test(size=(80, 24)) as pilot:
        board = await loaded_board(pilot)
        for uid in ("alice", "carol"):
            board.select_user(uid)
            await pilot.press("space")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        assert "Refresh 2 users marked?" in screen_text(app)
        await pilot.press("y")
        await wait_until(pilot, lambda: any("Refreshed" in n for n in notifications(app)), what="done")
    after = {uid: (await service.get_record(uid)).refresh_count for uid in ("alice", "bob", "carol")}
    assert after == {"alice": before["alice"] + 1, "bob": before["bob"], "carol": before["carol"] + 1}


@pytest.mark.parametrize("width,shown", [
    (160, ["user", "email", "status", "expires", "last_used", "refreshes", "source", "scopes", "plan", "5h", "7d"]),
    (100, ["user", "email", "status", "expires", "last_used", "plan", "5h", "7d"]),
    (80, ["user", "email", "status", "expires", "5h", "7d"]),   # the usage columns win at 80
    (60, ["user", "status", "expires", "5h", "7d"]),
    (34, ["user", "status", "5h", "7d"]),
])
async def test_narrow_boards_drop_the_least_useful_columns_first(service, login, width, shown):
    await login(service, "alice-with-a-long-name", email="alice.long@corp.example")
    app = app_for(service)
    async with app.run_test(size=(width, 24)) as pilot:
        board = await loaded_board(pilot)
        assert board.shown_columns() == shown
        text = screen_text(app)
        row = next(line for line in text.splitlines() if "alice" in line)
        assert "✓ active" in row
        health = app.screen.query_one(HealthBar)
        assert health.region.height <= 2, "the header wrapped onto a third line"


async def test_c_chooses_the_columns_but_never_user_or_status(service, login):
    from console.screens.modals.columns import ColumnsScreen
    from textual.widgets import SelectionList

    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=SIZE) as pilot:
        board = await loaded_board(pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ColumnsScreen), what="the chooser")
        choices = app.screen.query_one(SelectionList)
        for key in ("email", "scopes", "user"):
            choices.deselect(key)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")
        assert board.shown_columns()[:6] == ["user", "status", "expires", "last_used", "refreshes", "source"]
        assert "email" not in board.shown_columns() and "scopes" not in board.shown_columns()
        assert "ACCOUNT" not in screen_text(app) and "USER" in screen_text(app)


async def test_footer_shows_backup_and_restore_at_80_columns(service):
    app = app_for(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded_board(pilot)
        await wait_until(pilot, lambda: "q Quit" in screen_text(app).splitlines()[-1], what="the footer drawn")
        footer = screen_text(app).splitlines()[-1]
        for words in ("l Login", "r Refresh", "d Logout", "b Backup", "o Restore", "? Help", "q Quit"):
            assert words in footer, footer


async def test_help_is_titled_in_words_and_lists_marks_and_columns(service, login):
    await login(service, "alice")
    app = app_for(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded_board(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert app.screen.query_one("#help-title").content == "Keys of the board"
        keys = dict(app.screen.rows)
        assert keys["space"].startswith("Mark or unmark") and keys["c"] == "Choose the columns to show"
        assert keys["b"] == "Back up the stored tokens" and keys["o"] == "Restore tokens from a backup"
        assert sum(1 for description in keys.values() if description.startswith("Show every key")) == 1


def _lightness(style) -> float:
    color = style.bgcolor if style.reverse else style.color
    if color is None or color.is_default:
        return 1.0  # the terminal's own text colour: full brightness on a dark terminal
    r, g, b = color.get_truecolor()
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


async def test_without_colour_bad_states_are_not_dimmer_than_good_ones(service, login, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    for uid in ("good", "bad", "other"):
        await login(service, uid)
    bad = await service.get_record("bad")
    await service.store.put(bad.evolve(needs_login=True))
    app = app_for(service)
    async with app.run_test(size=(100, 24)) as pilot:
        board = await loaded_board(pilot)
        await wait_until(pilot, lambda: board.status_of("bad") == Status.NEEDS_LOGIN, what="needs login")
        board.select_user("other")   # the cursor (reverse video) on neither row compared
        await pilot.pause()
        cells = screen_cells(app)

        def label_cells(label: str, *, in_board: bool):
            for row in cells:
                text = "".join(ch for ch, _ in row)
                at = text.find(label)
                if at >= 0 and (("│" not in text) == in_board):
                    return row[at:at + len(label)]
            raise AssertionError(f"{label!r} is not on screen:\n{screen_text(app)}")

        for in_board in (True, False):   # the rows, then the header's counts
            good = min(_lightness(style) for _, style in label_cells("✓ active", in_board=in_board))
            worse = min(_lightness(style) for _, style in label_cells("✗ needs login", in_board=in_board))
            assert worse >= good, f"needs login ({worse:.2f}) is dimmer than active ({good:.2f})"
