"""Restore: open a backup, see what it would change, confirm, watch it being written.

The first step is always the dry run: the file is decrypted and compared with the store,
user by user, and the differences fill a table. Only then can the restore be confirmed.
Changing the overwrite mode re-plans from the decrypted backup without asking again. The
work is ``console.transfer`` on ``app.service`` (the engine the CLI uses) in workers that only post messages.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, ProgressBar, Select, Static

from ..transfer import apply_restore, open_and_plan, plan_restore, users_text
from ..tokens import format_time
from ..ui.messages import StageProgress, WorkFailed
from ..ui.messages import reason as failure_reason
from ..ui.styles import styles_path
from ..users import markup_safe
from .modals.confirm import ConfirmScreen

OVERWRITE_CHOICES = [
    ("newer: replace stored tokens older than the backup's", "newer"),
    ("always: replace every stored token with the backup's", "always"),
    ("never: only add users that are not stored", "never"),
]
TABLE_ROWS = 2000   # the diff table shows this many changes; the summary counts them all
_KIND_TEXT = {"new": "new user", "older": "stored is older", "newer": "stored is newer", "conflict": "conflict",
              "same": "unchanged", "invalid": "invalid"}
_ACTION_TEXT = {"add": "add", "replace": "replace", "keep": "keep", "none": "-", "refuse": "refuse"}


def _when(ts: float | None) -> str:
    return format_time(ts) if ts else "-"   # UTC, as the CLI and the detail screen show times


def _when_short(ts: float | None) -> str:
    """``2026-12-02 04:54`` (UTC): the table's times, short enough for the why column at 80."""
    return format_time(ts)[:16] if ts else "-"


class RestoreScreen(Screen[None]):
    """Path and passphrase, the dry-run diff as a table, a confirmation, the result."""

    CSS_PATH = styles_path("backup.tcss")   # the backup screen's sheet styles both
    HELP_TITLE = "restore screen"
    AUTO_FOCUS = "#restore-path"
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the board"),
        Binding("f5", "plan", "Show changes", tooltip="Open the backup and show what a restore would change"),
        Binding("ctrl+r", "apply", "Restore", tooltip="Write the changes shown (asks first)"),
    ]

    Progress = StageProgress

    class Planned(Message):
        def __init__(self, contents, plan) -> None:
            super().__init__()
            self.contents, self.plan = contents, plan

    class Restored(Message):
        def __init__(self, result) -> None:
            super().__init__()
            self.result = result

    Failed = WorkFailed

    def __init__(self, path: str | None = None, *, allow_weak_kdf: bool = False) -> None:
        """``allow_weak_kdf`` accepts backups below the KDF minimum: for tests only."""
        super().__init__()
        self.initial_path = path or ""
        self.allow_weak_kdf = allow_weak_kdf
        self.contents = None     # the decrypted backup, kept so a new mode re-plans without a passphrase
        self.plan = None
        self.result = None

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        with Vertical(classes="bk-form"):
            yield Label("Restore tokens from a backup", classes="bk-title")
            yield Static("F5 shows what would change; nothing is written until you confirm. A newer "
                         "stored token is kept unless the mode is 'always'.", classes="bk-help")
            with Horizontal(classes="bk-row"):
                yield Input(self.initial_path, id="restore-path", placeholder="the backup file", compact=True)
                yield Input(id="restore-passphrase", password=True, placeholder="its passphrase",
                            compact=True)
            with Horizontal(classes="bk-row"):
                yield Select(OVERWRITE_CHOICES, value="newer", allow_blank=False, id="restore-overwrite",
                             compact=True)
                yield Button("Show changes (F5)", id="restore-plan", variant="primary", compact=True)
                yield Button("Restore (ctrl+r)", id="restore-apply", variant="error", disabled=True,
                             compact=True)
            yield Static("", id="restore-summary", classes="bk-summary")
            yield DataTable(id="restore-diff", cursor_type="row", zebra_stripes=True)
            yield ProgressBar(id="restore-progress", show_eta=False)
            yield Static("", id="restore-result", classes="bk-result")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#restore-diff", DataTable)
        table.add_columns("User", "Change", "Action", "Why", "Stored (UTC)", "Backup (UTC)")

    def on_unmount(self) -> None:
        self.contents = self.plan = None   # decrypted tokens do not outlive the screen

    @property
    def busy(self) -> bool:
        return any(w.is_running for w in self.workers if w.group == "restore")

    @property
    def overwrite(self) -> str:
        value = self.query_one("#restore-overwrite", Select).value
        return value if isinstance(value, str) else "newer"

    def _say(self, text: str, severity: str = "information") -> None:
        self.query_one("#restore-result", Static).update(text)
        if severity != "information":
            self.notify(text.lstrip("✗ "), severity=severity, timeout=8)

    # -- step 1: open the backup and plan ----------------------------------------------------

    @on(Input.Submitted, "#restore-path")
    def _path_done(self) -> None:
        self.query_one("#restore-passphrase", Input).focus()

    @on(Input.Submitted, "#restore-passphrase")
    @on(Button.Pressed, "#restore-plan")
    def _plan_requested(self) -> None:
        self.action_plan()

    @on(Input.Changed, "#restore-path")
    def _path_changed(self) -> None:
        if self.contents is not None and self.contents.path != self.query_one("#restore-path", Input).value.strip():
            self._forget_plan()

    def _forget_plan(self) -> None:
        self.contents = self.plan = None
        self.query_one("#restore-apply", Button).disabled = True
        self.query_one("#restore-diff", DataTable).clear()
        self.query_one("#restore-summary", Static).update("")

    def action_plan(self) -> None:
        if self.busy:
            self.notify("Busy: wait for the current step to finish", severity="warning")
            return
        path = self.query_one("#restore-path", Input).value.strip()
        passphrase = self.query_one("#restore-passphrase", Input).value
        if not path:
            self._say("✗ give the backup file to restore", "error")
            self.query_one("#restore-path", Input).focus()
            return
        if self.contents is not None and self.contents.path == path and not passphrase:
            self._start("Comparing with the store…")
            self._plan(None, None)
            return
        if not passphrase:
            self._say("✗ type the backup's passphrase", "error")
            self.query_one("#restore-passphrase", Input).focus()
            return
        self._forget_plan()
        self._start("Deriving the key and decrypting…")
        self._plan(path, passphrase)

    @on(Select.Changed, "#restore-overwrite")
    def _mode_changed(self) -> None:
        if self.contents is not None and not self.busy:
            self._start("Comparing with the store…")
            self._plan(None, None)

    def _start(self, text: str) -> None:
        self.remove_class("-done")
        self.query_one("#restore-result", Static).update(text)
        self.query_one("#restore-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#restore-apply", Button).disabled = True
        self.add_class("-working")

    @work(group="restore", exclusive=True, exit_on_error=False)
    async def _plan(self, path: str | None, passphrase: str | None) -> None:
        service = self.app.service
        try:
            if path is not None:   # the store is read while the key is derived
                contents, plan = await open_and_plan(service, path, passphrase, overwrite=self.overwrite,
                                                     allow_weak_kdf=self.allow_weak_kdf,
                                                     progress=self._progress_poster)
            else:
                contents = self.contents
                plan = await plan_restore(service, contents, overwrite=self.overwrite)
        except Exception as exc:
            self.post_message(self.Failed(failure_reason(exc)))
        else:
            self.post_message(self.Planned(contents, plan))

    def _progress_poster(self, stage: str, done: int, total: int) -> None:
        self.post_message(self.Progress(stage, done, total))

    @on(Planned)
    def _planned(self, message: Planned) -> None:
        self.remove_class("-working")
        self.contents, self.plan = message.contents, message.plan
        self.query_one("#restore-passphrase", Input).value = ""
        plan = message.plan
        self.query_one("#restore-progress", ProgressBar).update(total=1, progress=0)
        counts = plan.counts()
        parts = [f"{n} {_KIND_TEXT[k]}" for k, n in counts.items() if n]
        made = f", made {_when(plan.backup_created_at)}" if plan.backup_created_at else ""
        writes = len(plan.to_write)
        self.query_one("#restore-summary", Static).update(
            f"{users_text(len(plan.changes))} in the backup{made} · " + (", ".join(parts) or "no users")
            + f" · mode {plan.overwrite}: {writes} to write into the {plan.tier} store")
        table = self.query_one("#restore-diff", DataTable)
        shown = [c for c in plan.changes if c.kind != "same"]
        with self.app.batch_update():
            table.clear()
            for change in shown[:TABLE_ROWS]:
                table.add_row(markup_safe(change.user_id), _KIND_TEXT[change.kind], _ACTION_TEXT[change.action],
                              markup_safe(change.reason, 200), _when_short(change.stored_updated_at),
                              _when_short(change.backup_updated_at),
                              key=None if change.action == "refuse" else change.user_id)
        more = f" (the table shows the first {TABLE_ROWS} of {len(shown)} changes)" if len(shown) > TABLE_ROWS else ""
        if writes:
            self._say(f"Dry run: nothing written yet. Press ctrl+r to restore {users_text(writes)}{more}.")
        else:
            self._say(f"Nothing to restore: the store already holds what this mode would write{more}.")
        self.query_one("#restore-apply", Button).disabled = writes == 0

    # -- step 2: confirm and write -----------------------------------------------------------

    @on(Button.Pressed, "#restore-apply")
    def _apply_pressed(self) -> None:
        self.action_apply()

    def action_apply(self) -> None:
        plan = self.plan
        if self.busy:
            self.notify("Busy: wait for the current step to finish", severity="warning")
            return
        if plan is None:
            self._say("✗ show the changes first (F5): a restore is always planned before it is written", "warning")
            return
        writes = len(plan.to_write)
        if not writes:
            self.notify("Nothing to restore", severity="warning")
            return
        counts = plan.counts()
        detail = ", ".join(f"{n} {_KIND_TEXT[k]}" for k, n in counts.items() if n)

        def answered(yes: bool | None) -> None:
            if yes and self.plan is plan:
                self._start(f"Writing {users_text(writes)}…")
                self._apply(plan)

        self.app.push_screen(ConfirmScreen(f"Write {users_text(writes)} into the {plan.tier} store?",
                                           detail=f"{detail} (mode {plan.overwrite})", yes="Restore"), answered)

    @work(group="restore", exclusive=True, exit_on_error=False)
    async def _apply(self, plan) -> None:
        try:
            result = await apply_restore(self.app.service, plan, progress=self._progress_poster)
        except Exception as exc:
            self.post_message(self.Failed(failure_reason(exc)))
        else:
            self.post_message(self.Restored(result))

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        if message.total:
            self.query_one("#restore-progress", ProgressBar).update(total=message.total, progress=message.done)

    @on(Restored)
    def _restored(self, message: Restored) -> None:
        self.remove_class("-working")
        self.add_class("-done")
        result = self.result = message.result
        self.plan = None
        total = max(len(result.written) + len(result.changed_meanwhile), 1)
        self.query_one("#restore-progress", ProgressBar).update(total=total, progress=total)
        text = (f"✓ Restored {users_text(len(result.written))} in {result.batches} batches; "
                f"{result.kept} kept, {result.unchanged} unchanged")
        if result.changed_meanwhile:
            text += (f"; {len(result.changed_meanwhile)} changed while restoring and kept their newer tokens "
                     f"({', '.join(result.changed_meanwhile[:3])}{', …' if len(result.changed_meanwhile) > 3 else ''})")
        self._say(text)
        self.notify(f"Restored {users_text(len(result.written))}")

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self.remove_class("-working")
        self.query_one("#restore-progress", ProgressBar).update(total=1, progress=0)
        self.query_one("#restore-apply", Button).disabled = not (self.plan and self.plan.to_write)
        self._say(f"✗ {message.reason}", "error")

    def action_back(self) -> None:
        if self.busy:
            self.notify("Still working; it finishes in a moment", severity="warning")
            return
        self.dismiss(None)
