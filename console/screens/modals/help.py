"""``?``: every key of the screen underneath, including the ones the footer leaves out."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, Static, TextArea

from ...tokens import Status
from ...ui.keys import NOISE, listed_bindings
from ...ui.styles import styles_path
from ...widgets.status_badge import MEANINGS, status_label


def key_rows(screen: Screen) -> list[tuple[str, str]]:
    """``[(keys, description)]`` for the screen's active bindings, one row per action.

    The screen's own actions come first, then the focused widget's (moving about), then the
    app's; a binding's tooltip is its long description. A text field's editing keys are
    left out (they are the usual ones, and they would bury the screen's own), and an app
    action the screen binds itself (help) is listed once, with the screen's key.
    """
    app = screen.app
    rows: dict[tuple[int, str], tuple[int, list[str], str]] = {}
    own = {active.binding.action.removeprefix("app.") for active in screen.active_bindings.values()
           if active.node is screen}
    for active in listed_bindings(screen):
        binding = active.binding
        if isinstance(active.node, (Input, TextArea)):
            continue
        if active.node is app and binding.action in own:
            continue
        name = binding.action.split("(", 1)[0].removeprefix("app.")
        if active.node is screen and screen.check_action(name, ()) is False:
            continue  # not on offer at this step of the screen
        rank = 0 if active.node is screen else 2 if active.node is app else 1
        _, keys, _ = rows.setdefault((id(active.node), binding.action),
                                     (rank, [], binding.tooltip or binding.description))
        shown = app.get_key_display(binding)
        if shown not in keys:
            keys.append(shown)
    # A key a text field took over (↓ moves its cursor) still does the screen's action when
    # the field lets it through: list the screen's own bindings the field hid.
    for key, bindings in screen._bindings.key_to_bindings.items():
        for binding in bindings:
            name = binding.action.split("(", 1)[0].removeprefix("app.")
            if (binding.description and (id(screen), binding.action) not in rows
                    and binding.action not in NOISE and screen.check_action(name, ()) is not False):
                rows[(id(screen), binding.action)] = (0, [app.get_key_display(binding)],
                                                      binding.tooltip or binding.description)
    ordered = sorted(rows.values(), key=lambda row: row[0])
    return [(" ".join(keys), description) for _, keys, description in ordered]


class HelpScreen(ModalScreen[None]):
    CSS_PATH = styles_path("help.tcss")
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.rows = key_rows(screen)
        self.for_screen = getattr(screen, "HELP_TITLE", "") or _words(type(screen).__name__)
        self.show_statuses = getattr(screen, "HELP_STATUSES", False)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Label(f"Keys of the {self.for_screen}", id="help-title")
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold", no_wrap=True)
            table.add_column()
            for keys, description in self.rows:
                table.add_row(keys, description)
            yield Static(table, id="help-keys")
            if self.show_statuses:
                legend = Table.grid(padding=(0, 2))
                legend.add_column(no_wrap=True)
                legend.add_column()
                for status in sorted(Status, key=lambda s: s.urgency):
                    legend.add_row(status_label(status), MEANINGS[status])
                legend.add_row("off", "storage tier not configured (DOWN: configured but unreachable)")
                yield Label("Statuses", classes="help-heading")
                yield Static(legend, id="help-statuses")
            yield Label("escape closes this help", classes="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)


def _words(class_name: str) -> str:
    """``QRFullScreen`` -> ``qr full screen``: a title in words for a screen without one."""
    import re

    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+", class_name)
    return " ".join(word.lower() for word in words) or "screen"
