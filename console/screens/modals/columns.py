"""``c`` on the board: which columns to show. The user and status columns always stay."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, SelectionList
from textual.widgets.selection_list import Selection

from ...widgets.board_view import ALWAYS_SHOWN, COLUMNS


class ColumnsScreen(ModalScreen[frozenset[str] | None]):
    """Dismisses with the columns to hide, or None when cancelled."""

    DEFAULT_CSS = """
    ColumnsScreen { align: center middle; background: $background 60%; }
    #columns-dialog { width: 44; max-width: 100%; height: auto; max-height: 100%;
                      padding: 0 1; border: thick $accent; background: $surface; }
    #columns-dialog SelectionList { height: auto; border: none; }
    #columns-title { text-style: bold; }
    #columns-hint { color: $text-muted; }
    """
    BINDINGS = [
        Binding("enter", "done", "Apply", priority=True),  # the list would take it as a toggle
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, hidden: frozenset[str]) -> None:
        super().__init__()
        self.hidden = hidden

    def compose(self) -> ComposeResult:
        with Vertical(id="columns-dialog"):
            yield Label("Columns to show", id="columns-title")
            choices = [Selection(column.title.capitalize(), column.key, column.key not in self.hidden,
                                 disabled=column.key in ALWAYS_SHOWN)
                       for column in COLUMNS]
            yield SelectionList[str](*choices, id="columns")
            yield Label("space toggles · enter applies · esc cancels. Narrow windows still drop "
                        "the least useful columns.", id="columns-hint")

    def action_done(self) -> None:
        shown = set(self.query_one(SelectionList).selected) | ALWAYS_SHOWN
        self.dismiss(frozenset(c.key for c in COLUMNS if c.key not in shown))

    def action_cancel(self) -> None:
        self.dismiss(None)
