"""The Textual app: small on purpose; it wires the screens to the one auth service."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from .screens.board import BoardScreen
from .service import AuthService
from .tokens import TokenRecord
from .ui.palette import ScreenKeysProvider
from .ui.styles import styles_path, stylesheets


class ConsoleApp(App[int]):
    """``claude-console`` with no verb: a live board of every user's tokens."""

    TITLE = "claude-console"
    SUB_TITLE = "Claude OAuth tokens"
    # What the board needs to paint; every other stylesheet is read right after the first paint.
    CSS_PATH = [styles_path("shared.tcss"), styles_path("board.tcss")]
    COMMANDS = App.COMMANDS | {ScreenKeysProvider}
    BINDINGS = [
        Binding("question_mark", "help", "Help", tooltip="Show every key of this screen"),
        Binding("q", "quit", "Quit", tooltip="Quit the console"),
        Binding("D", "doctor", "Doctor", show=False, tooltip="Check configuration, storage, network and Claude"),
    ]

    def __init__(self, service: AuthService | None = None, *, clock: Callable[[], float] = time.time,
                 sandbox_url: str | None = None, refresh_interval: float = 2.0,
                 records: list[TokenRecord] | None = None) -> None:
        super().__init__()
        self._owns_service = service is None
        self.service = service if service is not None else AuthService(face="tui")
        self.clock = clock
        self.sandbox_url = sandbox_url
        self.refresh_interval = refresh_interval
        self.preloaded = records   # a first screen of rows read before start, if any
        if sandbox_url:
            self.title = "claude-console SANDBOX"
            self.sub_title = f"EMULATOR {sandbox_url} · not Claude"

    def notify(self, message: str, *, markup: bool = False, **options) -> None:
        """Notifications quote user ids and error text: plain text unless a caller asks."""
        super().notify(message, markup=markup, **options)

    def get_default_screen(self) -> Screen:
        return BoardScreen()

    def on_mount(self) -> None:
        if self.sandbox_url:
            self.add_class("-sandbox")
        for warning in self.service.settings.warnings():  # e.g. the old console.anthropic.com host
            self.notify(warning, title="Configuration", severity="warning", timeout=30)
        self.call_after_refresh(self._read_other_styles)

    def _read_other_styles(self) -> None:
        """The rest of ``styles/`` (any screen's, including ones added later), after the first
        frame is out: parsing them all before it would slow the start by a third."""
        stylesheet, fresh = self.stylesheet, False
        for path in stylesheets():
            if not stylesheet.has_source(str(path), ""):
                stylesheet.read(path)
                fresh = True
        if fresh:
            stylesheet.reparse()
            stylesheet.update(self)

    async def on_unmount(self) -> None:
        if self._owns_service:
            await self.service.aclose()

    def action_doctor(self) -> None:
        from .screens.doctor import DoctorScreen

        if not isinstance(self.screen, DoctorScreen):
            self.push_screen(DoctorScreen())

    def action_help(self) -> None:
        from .screens.modals.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.screen))


async def first_page(service: AuthService) -> list[TokenRecord]:
    """The first page of users, read before the app starts: the board paints it at once and
    streams the rest, and a store that cannot be read fails here, before the screen opens."""
    from .screens.board import FIRST_PAGE, PAGE_SIZE

    pages = service.iter_users(PAGE_SIZE, first=FIRST_PAGE)
    try:
        return await anext(pages, [])
    finally:
        await pages.aclose()


def _log_to_file(settings, verbose: bool) -> str | None:
    """A full-screen app cannot log to stderr: --verbose writes a private log file instead."""
    if not verbose:
        return None
    from .logs import setup_logging

    folder = settings.token_path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "claude-console-tui.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    setup_logging(settings.log_level or None, verbose=True, stream=os.fdopen(fd, "a", buffering=1))
    return str(path)


def run_app(config: str | None = None, verbose: bool = False, sandbox: str | None = None,
            qr_style: str | None = None) -> int:
    """Run the console until the operator quits; returns the process exit code."""
    import asyncio

    from .config import load_settings
    from .errors import ConsoleError

    sandbox = sandbox or os.environ.get("CLAUDE_CONSOLE_SANDBOX") or None
    try:
        settings = load_settings(config, qr_style=qr_style)
        log_path = _log_to_file(settings, verbose)
        service = AuthService(settings, face="tui")
    except ConsoleError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code

    from .shutdown import close_service, stop_on_sigterm
    from .users import printable

    def err(line: str) -> None:  # after the screen is gone: plain lines on stderr, as the CLI prints
        print(printable(line, keep_lines=True), file=sys.stderr, flush=True)

    async def main() -> int:
        code = 0
        try:
            try:
                records = await first_page(service)   # an unreadable store stops here, in one line
            except ConsoleError as exc:
                print(f"error: {exc}", file=sys.stderr, flush=True)
                code = exc.exit_code
            else:
                app = ConsoleApp(service, sandbox_url=sandbox, records=records)
                stop_on_sigterm(app.exit, say=err)  # SIGTERM: a graceful exit, so held tokens get their last tries
                await app.run_async()
                code = app.return_code or 0
        finally:
            lost = await close_service(service, say=err)  # says so while a held token keeps us from exiting
        return code or lost

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    if log_path:
        print(f"log: {log_path}", file=sys.stderr, flush=True)
    return code
