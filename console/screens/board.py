"""The home screen: every user, live, with the actions an operator needs.

Data arrives from workers as messages; only message handlers touch widgets. Polls are
chained (the next is armed when the last one lands), so they never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from operator import attrgetter

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.geometry import Size
from textual.message import Message
from textual.reactive import Reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Label, ProgressBar
from textual.worker import Worker

from ..errors import ConsoleError
from ..tokens import TokenRecord, count_text, format_duration
from ..ui.hints import BOARD, with_keys
from ..ui.host import console_app
from ..ui.messages import reason
from ..ui.styles import styles_path
from ..widgets.board_view import COLUMNS, BoardView
from ..widgets.health_bar import HealthBar
from .modals.confirm import ConfirmScreen

_USER_ID = attrgetter("user_id")
log = logging.getLogger("console.tui")


class PolledPage(Message):
    """One page of a listing: the board upserts it at once, so big stores show rows early."""

    def __init__(self, records: list[TokenRecord]) -> None:
        super().__init__()
        self.records = records


class Polled(Message):
    """The listing is complete: every user id seen, the storage health, what it cost, and the
    change cursor taken before it (``None``: the store cannot say what changed)."""

    def __init__(self, user_ids: set[str], health: list, seconds: float, cursor=None) -> None:
        super().__init__()
        self.user_ids = user_ids
        self.health = health
        self.seconds = seconds
        self.cursor = cursor


class PolledChanges(Message):
    """Only what changed since the last poll (``health`` is ``None`` when not re-read)."""

    def __init__(self, changes, health: list | None, seconds: float) -> None:
        super().__init__()
        self.changes = changes
        self.health = health
        self.seconds = seconds


class FilterField(Input):
    """The filter's one-line field. An ``Input`` sets its scrollable width on every change of
    its value, and that lays the whole screen out again (about 9 ms a keystroke at 120x40);
    this field's size is fixed by the stylesheet, so the width is only repainted."""

    virtual_size = Reactive(Size(0, 0), layout=False)


class PolledUsage(Message):
    """Stored plan and usage cells (``{user: UsageCells}``), read beside a listing."""

    def __init__(self, cells: dict) -> None:
        super().__init__()
        self.cells = cells


class PollFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class WorkProgress(Message):
    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class WorkDone(Message):
    """A user-visible outcome: a notification, then a fresh poll."""

    def __init__(self, text: str, severity: str = "information", *, bulk: bool = False) -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.bulk = bulk


FIRST_PAGE = 1000         # users in the first listing page: painted at once
PAGE_SIZE = 50000         # users per later page (each applied in 0.1-0.2 s while the UI waits)
POLL_COST_FACTOR = 4.0    # wait at least this many times as long as the last poll took
WATCH_EVERY = 0.5         # a store that says what changed is asked this often (changes show within 1 s)
USAGE_EVERY = 15.0        # stored usage and plan written since the last read are read this often
USAGE_WHOLE_EVERY = 300.0  # ... and everyone's this often (or always, when the store cannot say)
USAGE_OVERLAP = 60.0      # a read goes back this far before the last one's mark (late commits)
ASK_AT_ONCE = 10          # on-screen users with stale usage asked for per read (each under the lease)
HEALTH_EVERY = 30.0       # while only changes are read, storage health is re-read this often

# Digits pick the first nine columns; the usage columns have letters of their own.
_USAGE_SORT_KEYS = {"plan": "p", "5h": "u", "7d": "w"}
_SORT_BINDINGS = [Binding(str(i), f"sort('{c.key}')", f"Sort: {c.title.lower()}", show=False,
                          tooltip=f"Sort by {c.title.lower()} (again: reverse)")
                  for i, c in enumerate([c for c in COLUMNS if c.key not in _USAGE_SORT_KEYS], start=1)]
_SORT_BINDINGS += [Binding(letter, f"sort('{key}')", f"Sort: {key}", show=False,
                           tooltip=f"Sort by {'plan' if key == 'plan' else key + ' usage'} (again: reverse)")
                   for key, letter in _USAGE_SORT_KEYS.items()]


class BoardScreen(Screen[None]):
    CSS_PATH = styles_path("board.tcss")   # the app reads it before the first paint too
    HELP_TITLE = "board"
    HELP_STATUSES = True
    AUTO_FOCUS = "BoardView"
    BINDINGS = [
        Binding("l", "login", "Login", tooltip="Log a user in (guided, with a QR code)"),
        Binding("enter", "detail", "Detail", show=False, tooltip="Open the selected user's detail"),
        Binding("r", "refresh", "Refresh",
                tooltip="Refresh the selected user's token now (the marked users', if any)"),
        Binding("R", "refresh_all", "All", tooltip="Refresh every user shown (escape stops)"),
        Binding("d,delete", "logout", "Logout",
                tooltip="Log the selected user out, or the marked users (asks first)"),
        Binding("space", "mark", "Mark", show=False,
                tooltip="Mark or unmark the row; r and d then act on every marked row"),
        Binding("slash", "filter", "Filter", tooltip="Filter as you type (escape clears)"),
        Binding("s", "cycle_sort", "Sort", show=False, tooltip="Sort by the next column (1-8 pick one)"),
        *_SORT_BINDINGS,
        Binding("c", "columns", "Columns", show=False, tooltip="Choose the columns to show"),
        Binding("b", "backup", "Backup", tooltip="Back up the stored tokens"),
        Binding("o", "restore", "Restore", tooltip="Restore tokens from a backup"),
        Binding("escape", "escape", "Clear", show=False,
                tooltip="Clear the filter, then the marks, or stop a refresh of all users"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._polling = False
        self._poll_again = False
        self._poll_timer: Timer | None = None
        self._last_poll_error: str | None = None
        self._bulk: Worker | None = None
        self._bulk_last_post = 0.0
        self._away = False
        self._cursor = None            # the store's change cursor: polls read only what changed
        self._health: list = []
        self._health_at = float("-inf")
        self._usage_at = float("-inf")
        self._usage_mark: float | None = None   # the store's clock at the last usage read
        self._usage_whole_at = float("-inf")

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = console_app(self)
        yield Header()
        yield HealthBar(id="health")
        yield BoardView(id="board", clock=app.clock,
                        refresh_buffer=app.service.settings.refresh_buffer)
        yield Footer(compact=True, show_command_palette=False)  # 80 columns: room for every key
        # The filter field and the progress line are mounted when first needed: a faster start.

    @property
    def board(self) -> BoardView:
        return self.query_one(BoardView)

    def on_mount(self) -> None:
        app = console_app(self)
        preloaded = app.preloaded
        if preloaded is not None:   # the first page, read before the app started
            app.preloaded = None
            self.board.set_records(preloaded, complete=False)
        else:
            self.board.loading = True
        self.poll_now()

    def on_screen_suspend(self) -> None:
        self._away = True

    def on_screen_resume(self) -> None:
        if self._away:        # back from another screen: show what changed there at once
            self._away = False
            self.poll_now()

    # -- polling -----------------------------------------------------------------------

    def poll_now(self) -> None:
        if self._polling:
            self._poll_again = True
            return
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        self._polling = True
        self._poll()

    def poll_later(self, delay: float | None = None) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(delay or self.app.refresh_interval, self._on_poll_timer)

    def _on_poll_timer(self) -> None:
        self._poll_timer = None
        if self.is_current:
            self.poll_now()
        else:
            self.poll_later()

    @work(group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        """Read what changed since the last poll; list everyone only the first time, or when
        the store cannot say (a restore, the token file rewritten, a cursor too old)."""
        service = self.app.service
        started = time.monotonic()
        seen: set[str] = set()
        try:
            cursor = self._cursor
            if cursor is not None:
                changes = await service.changes_since(cursor)
                if not changes.everything:
                    if started - self._usage_at >= USAGE_EVERY:
                        self._read_usage()
                    health = await service.health() if started - self._health_at >= HEALTH_EVERY else None
                    self.post_message(PolledChanges(changes, health, time.monotonic() - started))
                    return
                cursor = changes.cursor
            else:   # taken before the listing: whatever is written while it runs is read next time
                cursor = await service.change_cursor()
            # Plan and usage come from another table, and the tiers' health (a count over
            # every row) from another query: both are read beside the listing, on other
            # connections. The users on screen are asked about once the listing is in.
            self._read_usage(ask=False)
            checking = asyncio.ensure_future(service.health())
            try:
                async for page in service.iter_users(PAGE_SIZE, first=FIRST_PAGE):
                    seen.update(map(_USER_ID, page))
                    self.post_message(PolledPage(page))
            except BaseException:
                checking.cancel()   # the listing's own failure is what is said
                raise
            health = await checking
        except Exception as exc:  # every failure is one line in a notification
            self.post_message(PollFailed(reason(exc)))
        else:
            self.post_message(Polled(seen, health, time.monotonic() - started, cursor))

    @work(group="usage", exclusive=True, exit_on_error=False)
    async def _read_usage(self, ask: bool = True) -> None:
        """The stored plan and usage cells of the users whose facts were written since the last
        read (everyone's the first time and every ``USAGE_WHOLE_EVERY``). Then (``ask``) the
        users on screen whose usage is older than ``usage_interval`` (no refresher is polling
        them) are asked for, under the same shared lease as the refresher's, so a board adds
        no request a refresher made."""
        service = self.app.service
        self._usage_at = now = time.monotonic()
        since = None
        if self._usage_mark is not None and now - self._usage_whole_at < USAGE_WHOLE_EVERY:
            since = self._usage_mark - USAGE_OVERLAP
        try:
            mark, cells = await service.usage_cells_changed(since)
            if since is None:
                self._usage_whole_at = now
            self._usage_mark = mark
            self.post_message(PolledUsage(cells))
            if ask:
                await self._ask_stale(service)
        except Exception as exc:  # noqa: BLE001 - usage is optional: tokens still show
            log.info("usage not read: %s", exc)

    @work(group="usage-ask", exclusive=True, exit_on_error=False)
    async def _ask_for_stale(self) -> None:
        try:
            await self._ask_stale(self.app.service)
        except Exception as exc:  # noqa: BLE001 - usage is optional: tokens still show
            log.info("usage not asked for: %s", exc)

    async def _ask_stale(self, service) -> None:
        shown = self.board.on_screen()
        stale = service.stale_usage(shown, await service.usage_of(shown)) if shown else []
        for uid in stale[:ASK_AT_ONCE]:
            with contextlib.suppress(ConsoleError):  # kept with the user's facts; shown on the row
                await service.usage(uid, fresh=True)
        if stale:
            self.post_message(PolledUsage(await service.usage_cells(stale[:ASK_AT_ONCE])))

    def _poll_finished(self, seconds: float = 0.0) -> None:
        self._polling = False
        if self._poll_again:
            self._poll_again = False
            self.poll_now()
        else:
            # A store that takes long to list is polled less often: the UI keeps most of the CPU.
            # One that says what changed is asked often: an idle ask is one cheap round trip.
            every = self.app.refresh_interval if self._cursor is None \
                else min(self.app.refresh_interval, WATCH_EVERY)
            self.poll_later(max(every, POLL_COST_FACTOR * seconds))

    @on(PolledPage)
    def _apply_page(self, message: PolledPage) -> None:
        board = self.board
        with self.app.batch_update():
            board.loading = False
            board.begin_stream()
            board.set_records(message.records, complete=False)

    @on(Polled)
    def _apply_poll(self, message: Polled) -> None:
        board = self.board
        with self.app.batch_update():
            board.loading = False
            if not board.loaded:
                board.set_records([])
            board.retain(message.user_ids)
            board.end_stream()
            board.set_held(self.app.service.held_users())
            self.query_one(HealthBar).show(message.health, board.counts())
        self._ask_for_stale()
        self._cursor = message.cursor
        self._health, self._health_at = message.health, time.monotonic()
        self._readable_again()
        # Watching, the next poll reads only what changed: the listing's cost says nothing of it.
        self._poll_finished(message.seconds if self._cursor is None else 0.0)

    @on(PolledChanges)
    def _apply_changes(self, message: PolledChanges) -> None:
        board, changes = self.board, message.changes
        with self.app.batch_update():
            changed = board.set_records(changes.records, complete=False)
            changed = board.remove(changes.removed) or changed
            board.set_held(self.app.service.held_users())
            if message.health is not None:
                self._health, self._health_at = message.health, time.monotonic()
            if changed or message.health is not None:
                self.query_one(HealthBar).show(self._health, board.counts())
        self._cursor = changes.cursor
        self._readable_again()
        self._poll_finished(message.seconds)

    def _readable_again(self) -> None:
        if self._last_poll_error is not None:
            self._last_poll_error = None
            self.notify("storage is readable again")

    @on(PolledUsage)
    def _apply_usage(self, message: PolledUsage) -> None:
        self.board.set_usage(message.cells)

    @on(PollFailed)
    def _poll_failed(self, message: PollFailed) -> None:
        self.board.loading = False
        self.board.end_stream()
        if message.reason != self._last_poll_error:   # say it once, not every poll
            self._last_poll_error = message.reason
            self.notify(message.reason, title="Cannot read the store", severity="error", timeout=10)
        self._poll_finished()

    # -- the board's own messages ------------------------------------------------------

    @on(BoardView.ViewChanged)
    def _view_changed(self, message: BoardView.ViewChanged) -> None:
        board = message.board
        column = next(c for c in COLUMNS if c.key == board.sort_key)
        order = "urgency" if column.key == "status" else column.title.lower()
        title = f"Users {message.shown} of {message.total}" if board.filter_text \
            else f"Users ({message.total})"
        if board.filter_text:
            title += f" · filter “{board.filter_text}”"
        high = board.usage_high()
        if high:
            title += f" · {high} at ≥80% usage"
        if board.marked:
            title += f" · {len(board.marked)} marked"
        board.border_title = f"{title} · sorted by {order}{' (reversed)' if board.sort_reverse else ''}"
        field = self._filter_field()
        self.set_class(bool(board.filter_text) or (field is not None and field.has_focus), "-filtering")

    @on(BoardView.Selected)
    def _row_opened(self, message: BoardView.Selected) -> None:
        self._open_detail(message.user_id)

    # -- filter ------------------------------------------------------------------------

    def _filter_field(self) -> Input | None:
        found = self.query("#filter")
        return found.first(Input) if found else None

    async def action_filter(self) -> None:
        field = self._filter_field()
        if field is None:
            field = FilterField(placeholder="filter: user, account, status, source or scope", id="filter")
            await self.mount(field, before=self.board)
        self.add_class("-filtering")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.board.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.board.focus()
        self.set_class(bool(self.board.filter_text), "-filtering")

    def action_escape(self) -> None:
        filter_input = self._filter_field()
        if filter_input is not None and (self.board.filter_text or filter_input.has_focus):
            filter_input.value = ""
            self.board.set_filter("")
            self.remove_class("-filtering")
            self.board.focus()
        elif self.board.clear_marks():
            pass
        elif self._bulk is not None and self._bulk.is_running:
            self._bulk.cancel()

    # -- marks and columns -------------------------------------------------------------

    def action_mark(self) -> None:
        self.board.toggle_mark()

    def action_columns(self) -> None:
        from .modals.columns import ColumnsScreen

        def chosen(hidden: frozenset[str] | None) -> None:
            if hidden is not None:
                self.board.set_hidden_columns(hidden)

        self.app.push_screen(ColumnsScreen(self.board.hidden_columns), chosen)

    # -- sorting -----------------------------------------------------------------------

    def action_sort(self, key: str) -> None:
        self.board.sort_by(key)

    def action_cycle_sort(self) -> None:
        self.board.cycle_sort()

    # -- navigation --------------------------------------------------------------------

    def _selected(self) -> str | None:
        uid = self.board.selected_user_id
        if uid is None:
            self.notify("No user is selected: log one in with l", severity="warning")
        return uid

    def action_detail(self) -> None:
        uid = self._selected()
        if uid is not None:
            self._open_detail(uid)

    def _open_detail(self, uid: str) -> None:
        from .detail import DetailScreen

        self.app.push_screen(DetailScreen(uid))

    def action_login(self) -> None:
        from .login import LoginScreen   # read when first used: a faster start

        self.app.push_screen(LoginScreen(user_id=None), self._logged_in)

    def _logged_in(self, record: TokenRecord | None) -> None:
        if record is None:
            return
        self.board.select_user(record.user_id)
        who = record.account_email or "an unknown account"
        self.notify(f"{record.user_id} logged in as {who}")
        self.poll_now()

    def action_backup(self) -> None:
        from .backup import BackupScreen

        self.app.push_screen(BackupScreen())

    def action_restore(self) -> None:
        from .restore import RestoreScreen

        self.app.push_screen(RestoreScreen())

    # -- token actions -----------------------------------------------------------------

    def action_refresh(self) -> None:
        marked = self.board.marked
        if marked:
            def answered(yes: bool | None) -> None:
                if yes:
                    self.run_worker(self._start_bulk_refresh(marked))

            self.app.push_screen(ConfirmScreen(f"Refresh {_users(len(marked))} marked?",
                                               detail=_names(marked), yes="Refresh"), answered)
            return
        uid = self._selected()
        if uid is not None:
            self._refresh_one(uid)

    @work(group="refresh-one", exit_on_error=False)
    async def _refresh_one(self, uid: str) -> None:
        try:
            record = await self.app.service.refresh(uid, force=True)
        except Exception as exc:
            self.post_message(WorkDone(f"{uid}: refresh failed: {reason(exc)}", "error"))
        else:
            left = format_duration(record.expires_at - self.app.clock())
            self.post_message(WorkDone(f"{uid}: refreshed; expires in {left}"))

    def action_logout(self) -> None:
        marked = self.board.marked
        if marked:
            def answered_marked(yes: bool | None) -> None:
                if yes:
                    self.board.clear_marks()
                    self._logout_many(marked)

            self.app.push_screen(ConfirmScreen(
                f"Log out {_users(len(marked))} marked?",
                detail=f"{_names(marked)}. Their stored tokens are deleted; they must log in again."),
                answered_marked)
            return
        uid = self._selected()
        if uid is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._logout(uid)

        self.app.push_screen(ConfirmScreen(f"Log out user '{uid}'?",
                                           detail="Their stored tokens are deleted; they must log in again."),
                             answered)

    @work(group="logout", exit_on_error=False)
    async def _logout(self, uid: str) -> None:
        try:
            removed = await self.app.service.logout(uid)
        except Exception as exc:
            self.post_message(WorkDone(f"{uid}: log out failed: {reason(exc)}", "error"))
        else:
            self.post_message(WorkDone(f"{uid}: logged out" if removed else f"{uid}: was not logged in",
                                       "information" if removed else "warning"))

    @work(group="logout", exit_on_error=False)
    async def _logout_many(self, users: list[str]) -> None:
        done, failed = 0, []
        for uid in users:
            try:
                if await self.app.service.logout(uid):
                    done += 1
            except Exception as exc:
                failed.append((uid, reason(exc)))
        if not failed:
            self.post_message(WorkDone(f"Logged out {_users(done)}"))
        else:
            first_uid, first_reason = failed[0]
            self.post_message(WorkDone(f"Logged out {done} of {len(users)}; {first_uid}: {first_reason}"
                                       + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""),
                                       "error"))

    async def _work_line(self) -> tuple[Label, ProgressBar]:
        if not self.query("#work"):
            await self.mount(Horizontal(Label("", id="work-label"),
                                        ProgressBar(id="work-progress", show_eta=False), id="work"),
                             before=self.query_one(Footer))
        return self.query_one("#work-label", Label), self.query_one("#work-progress", ProgressBar)

    async def action_refresh_all(self) -> None:
        if self._bulk is not None and self._bulk.is_running:
            self.notify("A refresh of all users is already running (escape stops it)", severity="warning")
            return
        users = list(self.board.view)
        if not users:
            self.notify("No users to refresh", severity="warning")
            return
        await self._start_bulk_refresh(users)

    async def _start_bulk_refresh(self, users: list[str]) -> None:
        if self._bulk is not None and self._bulk.is_running:
            self.notify("A refresh of all users is already running (escape stops it)", severity="warning")
            return
        label, bar = await self._work_line()
        label.update(f"Refreshing {count_text(len(users), 'user')}…")
        bar.update(total=len(users), progress=0)
        self.add_class("-working")
        self._bulk = self._refresh_all(users)

    @work(group="bulk", exit_on_error=False)
    async def _refresh_all(self, users: list[str]) -> None:
        service = self.app.service
        total, done, failed = len(users), 0, []
        gate = asyncio.Semaphore(4)

        async def one(uid: str) -> None:
            nonlocal done
            async with gate:
                try:
                    await service.refresh(uid, force=True)
                except Exception as exc:
                    failed.append((uid, reason(exc)))
            done += 1
            now = time.monotonic()
            if done == total or now - self._bulk_last_post > 0.1:
                self._bulk_last_post = now
                self.post_message(WorkProgress(done, total))

        try:
            await asyncio.gather(*(one(uid) for uid in users))
        except asyncio.CancelledError:
            self.post_message(WorkDone(f"Stopped after {done} of {count_text(total, 'user')} "
                                       f"({len(failed)} failed)", "warning", bulk=True))
            raise
        if not failed:
            self.post_message(WorkDone(f"Refreshed all {total} users" if total > 1 else "Refreshed 1 user", bulk=True))
        else:
            first_uid, first_reason = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            self.post_message(WorkDone(f"Refreshed {total - len(failed)} of {count_text(total, 'user')}; "
                                       f"{first_uid}: {first_reason}{more}", "error", bulk=True))

    @on(WorkProgress)
    def _bulk_progress(self, message: WorkProgress) -> None:
        self.query_one("#work-progress", ProgressBar).update(total=message.total, progress=message.done)
        self.query_one("#work-label", Label).update(f"Refreshing {message.done}/{message.total}…")

    @on(WorkDone)
    def _work_done(self, message: WorkDone) -> None:
        if message.bulk:
            self.remove_class("-working")
        self.notify(with_keys(message.text, BOARD), severity=message.severity,
                    timeout=10 if message.severity == "error" else 4)
        self.poll_now()


def _users(n: int) -> str:
    return f"{n} user{'s' if n != 1 else ''}"


def _names(users: list[str], limit: int = 5) -> str:
    shown = ", ".join(users[:limit])
    return shown + (f" and {len(users) - limit} more" if len(users) > limit else "")
