"""The board shows Claude's refusals and long-lived tokens in their own words, first in urgency."""

from __future__ import annotations

from rich.style import Style
from textual.app import App

from console.tokens import Status, TokenRecord
from console.widgets.board_view import BoardView

NOW = 1_750_000_000.0


class Host(App):
    def compose(self):
        yield BoardView(clock=lambda: NOW)


async def test_refused_and_long_lived_rows():
    app = Host()
    async with app.run_test(size=(120, 20)) as pilot:
        board = app.query_one(BoardView)
        board.set_records([
            TokenRecord("calm", "a", "r", NOW + 9000, scopes=["user:profile"], version=1),
            TokenRecord("setup", "a", None, NOW + 100, scopes=["user:inference"], version=1),
            TokenRecord("gone", "a", "r", NOW + 9000, needs_login=True, version=1,
                        last_refresh_error="account_disabled: This organization has been disabled."),
            TokenRecord("barred", "a", "r", NOW + 9000, needs_login=True, version=1,
                        last_refresh_error="oauth_not_allowed: OAuth authentication is currently not allowed"),
        ])
        assert board.status_of("gone") is Status.ACCOUNT_DISABLED
        assert board.status_of("barred") is Status.OAUTH_NOT_ALLOWED
        assert board.status_of("setup") is Status.ACTIVE  # inside the buffer, but never refreshed
        assert set(board.view[:2]) == {"gone", "barred"}  # most urgent first

        def row(uid: str) -> str:
            return board._row_strip(board.record(uid), NOW, False, 120, Style()).text

        assert "✗ disabled" in row("gone") and "✗ not allowed" in row("barred")
        assert "✓ long-lived" in row("setup") and "✓ active" in row("calm")
        board.set_filter("account_disabled")
        assert board.view == ["gone"]
        await pilot.pause()
