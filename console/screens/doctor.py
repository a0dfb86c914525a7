"""D: the checks of ``claude-console doctor``, on a screen. r runs them again, escape closes."""

from __future__ import annotations

import logging

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, LoadingIndicator, Static

from ..errors import ConsoleError
from ..ui.styles import styles_path

log = logging.getLogger("console.tui")


class DoctorScreen(Screen[None]):
    CSS_PATH = styles_path("doctor.tcss")
    HELP_TITLE = "Doctor"
    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("r", "run", "Run again", tooltip="Run every check again"),
    ]

    def __init__(self, user_id: str | None = None) -> None:
        super().__init__()
        self.user_id = user_id
        self.checks: list = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="doctor"):
            yield Label("Doctor: can this console work against Claude?", id="doctor-title")
            yield LoadingIndicator(id="doctor-spinner")
            yield Static("", id="doctor-checks", markup=False)
            yield Static("", id="doctor-summary", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        self.query_one("#doctor-spinner").display = True
        self.query_one("#doctor-summary", Static).update("running the checks…")
        self.run_worker(self._run(), group="doctor", exclusive=True)

    async def _run(self) -> None:
        try:
            self.checks = await self.app.service.doctor(self.user_id)
        except ConsoleError as exc:
            self._show([], f"✗ {exc}")
            return
        except Exception as exc:  # never a traceback on screen
            log.exception("doctor failed")
            self._show([], f"✗ unexpected error: {type(exc).__name__}: {exc}")
            return
        failed = sum(not c.ok for c in self.checks)
        self._show(self.checks, "all checks pass" if not failed else
                   f"{failed} check{'s' if failed > 1 else ''} failed: each ✗ line says what to do")

    def _show(self, checks: list, summary: str) -> None:
        self.query_one("#doctor-spinner").display = False
        self.query_one("#doctor-checks", Static).update("\n".join(c.line() for c in checks))
        box = self.query_one("#doctor-summary", Static)
        box.update(summary)
        box.set_class(any(not c.ok for c in checks) or summary.startswith("✗"), "-failed")

    def action_close(self) -> None:
        self.dismiss(None)
