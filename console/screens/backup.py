"""Backup: every user's tokens to one passphrase-encrypted file, from the console.

The work is ``console.transfer.backup`` with ``app.service``, the same engine the CLI uses,
run in a worker that talks to the screen only through messages. The passphrase sits in masked fields (asked twice) and
is dropped from them once the file is written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, ProgressBar, Static

from ..transfer import MIN_PASSPHRASE, backup, size_text, users_text
from ..ui.messages import StageProgress, WorkFailed
from ..ui.messages import reason as failure_reason
from ..ui.styles import styles_path
from .modals.confirm import ConfirmScreen


def default_backup_path(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"~/claude-console-{stamp}.ccbackup"


class BackupScreen(Screen[None]):
    """Choose a file, type a passphrase twice, watch it being written, see the result."""

    CSS_PATH = styles_path("backup.tcss")
    HELP_TITLE = "backup screen"
    AUTO_FOCUS = "#backup-passphrase"   # the file has a good default; the passphrase never does
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the board"),
        Binding("ctrl+s", "start", "Back up", tooltip="Write the backup file"),
    ]

    Progress = StageProgress

    class Finished(Message):
        def __init__(self, summary) -> None:
            super().__init__()
            self.summary = summary

    Failed = WorkFailed

    def __init__(self, path: str | None = None, *, kdf: dict | None = None) -> None:
        """``kdf``: the engine's key derivation parameters. Only tests pass weaker ones."""
        super().__init__()
        self.initial_path = path or default_backup_path()
        self.kdf = kdf
        self.summary = None

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        with VerticalScroll(classes="bk-form"):
            yield Label("Back up every user's tokens", classes="bk-title")
            yield Static("One portable file, encrypted with a passphrase (scrypt, AES-256-GCM), mode "
                         "0600. It restores anywhere: o on the board, or claude-console restore FILE.",
                         classes="bk-help")
            yield Label("File", classes="bk-label")
            yield Input(self.initial_path, id="backup-path", placeholder="where to write the backup",
                        compact=True)
            yield Label(f"Passphrase (at least {MIN_PASSPHRASE} characters; it cannot be recovered)",
                        classes="bk-label")
            yield Input(id="backup-passphrase", password=True, placeholder="passphrase", compact=True)
            yield Label("Repeat the passphrase", classes="bk-label")
            yield Input(id="backup-repeat", password=True, placeholder="the same passphrase again",
                        compact=True)
            with Horizontal(classes="bk-buttons"):
                yield Button("Back up (ctrl+s)", id="backup-start", variant="primary", compact=True)
            yield ProgressBar(id="backup-progress", show_eta=False)
            yield Static("", id="backup-result", classes="bk-result")
        yield Footer()

    @property
    def busy(self) -> bool:
        return any(w.is_running for w in self.workers if w.group == "backup")

    # -- the form --------------------------------------------------------------------------

    @on(Input.Submitted, "#backup-path")
    def _path_done(self) -> None:
        self.query_one("#backup-passphrase", Input).focus()

    @on(Input.Submitted, "#backup-passphrase")
    def _passphrase_done(self) -> None:
        self.query_one("#backup-repeat", Input).focus()

    @on(Input.Submitted, "#backup-repeat")
    @on(Button.Pressed, "#backup-start")
    def _submit(self) -> None:
        self.action_start()

    def _fail(self, text: str) -> None:
        self.query_one("#backup-result", Static).update(f"✗ {text}")
        self.notify(text, severity="error", timeout=8)

    def action_start(self) -> None:
        if self.busy:
            self.notify("A backup is being written already", severity="warning")
            return
        path = self.query_one("#backup-path", Input).value.strip()
        first = self.query_one("#backup-passphrase", Input).value
        again = self.query_one("#backup-repeat", Input).value
        if not path:
            self._fail("give the file to write")
            self.query_one("#backup-path", Input).focus()
            return
        if len(first) < MIN_PASSPHRASE:
            self._fail(f"the passphrase is shorter than {MIN_PASSPHRASE} characters")
            self.query_one("#backup-passphrase", Input).focus()
            return
        if first != again:
            self._fail("the two passphrases differ")
            self.query_one("#backup-repeat", Input).focus()
            return
        target = Path(os.path.expanduser(path))
        if target.is_file():
            def answered(yes: bool | None) -> None:
                if yes:
                    self._start(path, first, force=True)

            self.app.push_screen(ConfirmScreen(f"Replace {target}?", detail="It exists; the new backup "
                                               "takes its place.", yes="Replace"), answered)
            return
        self._start(path, first, force=False)

    def _start(self, path: str, passphrase: str, *, force: bool) -> None:
        self.query_one("#backup-result", Static).update("Deriving the key and writing the file…")
        self.query_one("#backup-progress", ProgressBar).update(total=None, progress=0)
        self.add_class("-working")
        self._backup(path, passphrase, force)

    @work(group="backup", exclusive=True, exit_on_error=False)
    async def _backup(self, path: str, passphrase: str, force: bool) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            self.post_message(self.Progress(stage, done, total))

        try:
            summary = await backup(self.app.service, path, passphrase, force=force, kdf=self.kdf,
                                   progress=progress)
        except Exception as exc:  # every failure is one line
            self.post_message(self.Failed(failure_reason(exc)))
        else:
            self.post_message(self.Finished(summary))

    # -- what the worker says ----------------------------------------------------------------

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        bar = self.query_one("#backup-progress", ProgressBar)
        if message.total:
            bar.update(total=message.total, progress=message.done)

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        summary = self.summary = message.summary
        self.remove_class("-working")
        self.add_class("-done")
        bar = self.query_one("#backup-progress", ProgressBar)
        bar.update(total=max(summary.users, 1), progress=max(summary.users, 1))
        for field in ("#backup-passphrase", "#backup-repeat"):
            self.query_one(field, Input).value = ""
        text = (f"✓ Backed up {users_text(summary.users)} to {summary.path} ({size_text(summary.bytes)}, "
                f"mode 0600, {summary.kdf}, AES-256-GCM)")
        self.query_one("#backup-result", Static).update(text)
        self.notify(f"Backed up {users_text(summary.users)} to {summary.path}")

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self.remove_class("-working")
        self.query_one("#backup-progress", ProgressBar).update(total=1, progress=0)
        self._fail(message.reason)

    def action_back(self) -> None:
        if self.busy:
            self.notify("The backup is still being written; it finishes in a moment", severity="warning")
            return
        self.dismiss(None)
