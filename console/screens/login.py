"""The guided first-time login: pick a user, scan or open the URL, paste the code back.

Three stages on one screen. *pick*: type a user id or choose an existing one. *code*: the
authorize URL as a QR code (drawn here, never by a web service) and as text, a live
countdown of the pending login, and a field for ``CODE#STATE``, the callback URL or the
bare code; a rejected code leaves the login open, so the operator just pastes again.
*done*: the account and the expiry; enter returns the record to whoever pushed us.
All the OAuth work is ``app.service`` (the same ``AuthService`` the CLI uses).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import webbrowser
from datetime import datetime, timezone

from rich.markup import escape
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Input, LoadingIndicator, OptionList, Static
from textual.widgets.option_list import Option

from ..errors import ConsoleError
from ..qr import STYLES, choose_style
from ..tokens import TokenRecord, format_duration, format_span
from ..ui.hints import LOGIN, with_keys
from ..ui.host import console_app
from ..ui.styles import styles_path
from ..users import markup_safe
from ..widgets.countdown import Countdown
from ..widgets.qr import QRCode
from .qr_fullscreen import QRFullScreen, URLScreen

log = logging.getLogger("console.tui.login")

PANEL_MIN_WIDTH = 40   # the text column beside the QR code
CHROME_ROWS = 1        # the footer
USER_LIST_LIMIT = 50   # the pick list shows this many matches; typing narrows it


def browser_available() -> bool:
    """A browser can open here: a graphical session, or a Mac that is not reached over SSH."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True
    return sys.platform == "darwin" and not os.environ.get("SSH_CONNECTION")


def required_size(qr_needed: Size) -> Size:
    """The terminal the code stage needs to show the QR code beside its text."""
    return Size(qr_needed.width + PANEL_MIN_WIDTH, qr_needed.height + CHROME_ROWS)


def sandbox_hint(emulator: str) -> str:
    """One line: how to approve a sandbox login with no browser at all."""
    return (f"SANDBOX: this URL goes to the local emulator at {emulator}, not to Claude. No browser? "
            f"curl -sG {emulator}/_emulator/approve --data-urlencode \"url=THE URL\" (F2 copies it) "
            "prints the CODE#STATE to paste.")


class LoginScreen(Screen[TokenRecord | None]):
    """Dismisses with the stored ``TokenRecord`` on success, ``None`` on cancel."""

    CSS_PATH = styles_path("login.tcss")
    AUTO_FOCUS = "#user-input"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("f2", "copy_url", "Copy URL"),
        Binding("f3", "open_browser", "Open browser"),
        Binding("f4", "full_qr", "Full-screen QR"),
        Binding("f5", "show_url", "URL alone", tooltip="Show the URL alone, unwrapped, to select it"),
        Binding("ctrl+r", "restart", "Start over"),
        Binding("enter", "finish", "Done"),
        Binding("down", "focus_users", "Existing users", show=False),
        Binding("ctrl+l", "toggle_long_lived", "Long-lived", show=False,
                tooltip="Ask for a long-lived token (a year, inference only, never refreshed), as "
                        "`claude setup-token` does"),
        Binding("f1", "app.help", "Help", tooltip="Every key of this screen (? types into the fields)"),
    ]

    @property
    def HELP_TITLE(self) -> str:  # noqa: N802 (the name the help screen reads)
        step = {"pick": "step 1, the user", "code": "step 2, approve and paste",
                "done": "logged in"}.get(self.stage, self.stage)
        return f"login screen ({step})"

    def __init__(self, user_id: str | None = None) -> None:
        super().__init__()
        self.initial_user = user_id
        self.stage = "pick"
        self.user_id: str | None = None
        self.start = None  # the service's LoginStart
        self.record: TokenRecord | None = None
        self.busy = False
        self.long_lived = False  # ctrl+l on the first stage: a setup token instead of a login
        self._users: list[tuple[str, str]] = []  # (user id, label)

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="pick", id="stages"):
            with Vertical(id="pick"):
                yield Static("Log in a user", classes="title")
                yield Static("Type a user id, or pick an existing user below, then press enter.",
                             classes="hint")
                yield Input(value=self._default_user(), placeholder="user id", id="user-input")
                yield LoadingIndicator(id="pick-spinner", classes="spinner")
                yield Static("", id="pick-message", classes="message", markup=False)
                yield Static("Existing users", classes="subtitle")
                yield OptionList(id="user-list")
                yield Static("", id="user-list-more", classes="hint", markup=False)
            with Horizontal(id="code"):
                with Vertical(id="qr-box"):
                    yield QRCode(id="qr")
                with VerticalScroll(id="panel"):
                    with Horizontal(id="code-head"):
                        yield Static("", id="code-title", classes="title", markup=False)
                        yield Countdown(id="countdown", label="· expires in",
                                        expired_text="· the login expired", clock=self._now)
                    yield Static("", id="sandbox-note", classes="hint", markup=False)
                    yield Static("", id="too-small", markup=False)
                    yield Static("1. Scan the QR code or open this URL, and approve:", classes="hint")
                    yield Static("", id="url", markup=False)
                    yield Static("2. Paste the code shown (CODE#STATE), the callback URL or the "
                                 "bare code, then press enter:", classes="hint")
                    yield Input(placeholder="CODE#STATE", id="paste")
                    yield LoadingIndicator(id="code-spinner", classes="spinner")
                    yield Static("", id="code-message", classes="message", markup=False)
            with Vertical(id="done"):
                yield Static("", id="done-text", markup=False)
        yield Footer()

    def _default_user(self) -> str:
        if self.initial_user:
            return self.initial_user
        return self.app.service.settings.default_user

    def on_mount(self) -> None:
        sandbox = console_app(self).sandbox_url
        note = self.query_one("#sandbox-note", Static)
        note.display = bool(sandbox)
        if sandbox:
            note.update(sandbox_hint(sandbox))
        self.run_worker(self._load_users(), group="users", exclusive=True)

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self._fit()  # the terminal may have been resized while another screen was on top

    def _qr_style(self) -> str:
        return self.app.service.settings.qr_style

    def _fit(self) -> None:
        """Show the QR code beside the text, or say how large the terminal must be.

        Sizes come from the app (the terminal itself), never from a layout that may not
        have caught up with the last resize yet."""
        if self.start is None:
            return
        qr = self.query_one(QRCode)
        have = self.app.size
        fits = {style: _within(required_size(qr.needed_for(style)), have) for style in STYLES}
        qr.drawing = choose_style(self._qr_style(), fits)
        need = qr.needed
        want = required_size(need)
        small = not fits[qr.drawing]
        self.set_class(small, "-too-small")
        if small:
            alone = qr.needed_for(choose_style(self._qr_style(),
                                               {style: _within(qr.needed_for(style), have)
                                                for style in STYLES}))
            self.query_one("#too-small", Static).update(
                f"This terminal is {have.width}×{have.height}; the QR code beside this text needs "
                f"{want.width}×{want.height}. F4 shows the code alone (needs {alone.width}×"
                f"{alone.height}); F5 shows the URL alone, F2 copies it.")

    def _set_stage(self, stage: str) -> None:
        self.stage = stage
        self.query_one(ContentSwitcher).current = stage
        self.refresh_bindings()

    def _say(self, where: str, text: str, kind: str = "") -> None:
        message = self.query_one(where, Static)
        # Errors quote user ids and provider text: never markup. Their hints name this screen's keys.
        message.update(escape(with_keys(text, LOGIN)))
        message.set_class(kind == "error", "-error")
        message.set_class(kind == "ok", "-ok")

    def _now(self) -> float:
        return console_app(self).clock()

    # -- stage 1: the user -------------------------------------------------------------

    async def _load_users(self) -> None:
        try:
            records = await self.app.service.list_users()
        except ConsoleError as exc:
            self.query_one("#user-list-more", Static).update(f"The user list cannot be read: {exc}")
            return
        now = self._now()
        service = self.app.service
        records.sort(key=lambda r: r.user_id)
        self._users = [(r.user_id, f"{markup_safe(r.user_id)}  {markup_safe(r.account_email or '-')}  "
                                   f"{service.status_of(r, now).value}") for r in records]
        self._show_users(self.query_one("#user-input", Input).value)

    def _show_users(self, typed: str) -> None:
        needle = typed.strip().lower()
        matches = [u for u in self._users if needle in u[0].lower()] if needle else self._users
        if needle and not matches:  # the typed id is new: list everyone to pick from
            matches = self._users
        users = self.query_one("#user-list", OptionList)
        users.clear_options()
        users.add_options([Option(label, id=uid) for uid, label in matches[:USER_LIST_LIMIT]])
        users.display = bool(matches)
        more = self.query_one("#user-list-more", Static)
        if not self._users:
            more.update("No users are stored yet.")
        elif len(matches) > USER_LIST_LIMIT:
            more.update(f"… and {len(matches) - USER_LIST_LIMIT} more: type to narrow the list.")
        else:
            more.update("")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "user-input":
            self._show_users(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "user-input":
            self._begin(event.value)
        elif event.input.id == "paste":
            self._submit_code(event.value)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        uid = event.option.id or ""
        self.query_one("#user-input", Input).value = uid
        self._begin(uid)

    def _begin(self, typed: str) -> None:
        uid = typed.strip()
        if not uid:
            self._say("#pick-message", "✗ Type a user id, or pick one from the list.", "error")
            return
        if self.busy:
            return
        self.run_worker(self._start_login(uid), group="start", exclusive=True)

    async def _start_login(self, uid: str) -> None:
        where = "#pick-message" if self.stage == "pick" else "#code-message"
        spinner = self.query_one("#pick-spinner" if self.stage == "pick" else "#code-spinner")
        self.busy = True
        spinner.display = True
        try:
            start = await self.app.service.start_login(uid, long_lived=self.long_lived)
        except ConsoleError as exc:
            self._say(where, f"✗ {exc}", "error")
            return
        except Exception as exc:  # never a traceback on screen
            log.exception("start_login failed")
            self._say(where, f"✗ unexpected error: {type(exc).__name__}: {exc}", "error")
            return
        finally:
            self.busy = False
            spinner.display = False
        self._show_code(start)

    # -- stage 2: the URL and the code -------------------------------------------------

    def _show_code(self, start) -> None:
        self.start = start
        self.user_id = start.user_id
        self.query_one(QRCode).data = start.authorization_url
        url = start.authorization_url
        self.query_one("#url", Static).update(Text(url, style=Style(link=url)))  # OSC 8
        self.query_one("#code-title", Static).update(f"Log in user {markup_safe(start.user_id)} ")
        self.query_one(Countdown).deadline = start.expires_at
        self._say("#code-message", "")
        paste = self.query_one("#paste", Input)
        paste.value = ""
        self._set_stage("code")
        self._fit()
        paste.focus()

    def _submit_code(self, pasted: str) -> None:
        if self.busy or self.start is None:
            return
        self.busy = True
        self.query_one("#paste", Input).disabled = True
        self.query_one("#code-spinner").display = True
        self._say("#code-message", "Exchanging the code…")
        self.refresh_bindings()
        self.run_worker(self._complete(pasted), group="complete", exclusive=True)

    async def _complete(self, pasted: str) -> None:
        record: TokenRecord | None = None
        failure = ""
        try:
            record = await self.app.service.complete_login(pasted, self.user_id, state=self.start.state)
        except ConsoleError as exc:
            failure = str(exc)
        except Exception as exc:  # never a traceback on screen
            log.exception("complete_login failed")
            failure = f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            self.busy = False
            self.query_one("#code-spinner").display = False
            paste = self.query_one("#paste", Input)
            paste.disabled = False
            self.refresh_bindings()
        if record is None:
            if self._now() >= self.start.expires_at:  # nothing pasted can finish it any more
                retry = "This login expired: press ctrl+r to start over with a new URL."
            else:
                retry = "Paste again to retry, or press ctrl+r to start over with a new URL."
            self._say("#code-message", f"✗ {failure}\n{retry}", "error")
            paste.value = ""
            paste.focus()
            return
        self._succeeded(record)

    def on_countdown_expired(self, event: Countdown.Expired) -> None:
        if self.stage == "code" and not self.busy:
            within = format_span(self.app.service.settings.pending_ttl)   # "45 seconds", not "0 minutes"
            self._say("#code-message", f"✗ This login expired (logins must finish within {within}). "
                                       "Press ctrl+r to start over.", "error")

    # -- stage 3: done -----------------------------------------------------------------

    def _succeeded(self, record: TokenRecord) -> None:
        self.record = record
        left = record.expires_at - self._now()
        at = datetime.fromtimestamp(record.expires_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.query_one("#done-text", Static).update(
            f"✓ Logged in user {markup_safe(record.user_id)}\n\n"
            f"  account   {record.account_email or '(the provider did not say)'}\n"
            f"  expires   in {format_duration(left)} ({at})\n\n"
            "Press enter to go back.")
        self._set_stage("done")
        self.set_focus(None)

    # -- actions -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("copy_url", "full_qr", "show_url"):
            return self.stage == "code"
        if action == "open_browser":
            return self.stage == "code" and browser_available()
        if action == "restart":
            return self.stage == "code" and not self.busy
        if action == "finish":
            return self.stage == "done"
        if action in ("focus_users", "toggle_long_lived"):
            return self.stage == "pick"
        return True

    def action_toggle_long_lived(self) -> None:
        self.long_lived = not self.long_lived
        self._say("#pick-message", "Long-lived token: ON (a year, inference only, never refreshed; "
                  "ctrl+l turns it off)" if self.long_lived else "Long-lived token: off (a normal login)",
                  "ok" if self.long_lived else "")

    def action_cancel(self) -> None:
        if self.stage == "done":
            self.dismiss(self.record)
            return
        self.workers.cancel_group(self, "complete")
        if self.start is not None and self.stage == "code":
            self.run_worker(self._cancel_pending(self.start.state), group="cancel", exclusive=True)
            return
        self.dismiss(None)

    async def _cancel_pending(self, state: str) -> None:
        """The login this screen started goes with it: nothing pending is left behind."""
        try:
            await self.app.service.cancel_login(state)
        except ConsoleError as exc:  # the screen still closes; the login expires on its own
            self.notify(f"The pending login could not be removed ({exc}); it expires by itself.",
                        severity="warning")
        except Exception:
            log.exception("cancel_login failed")
        self.dismiss(None)

    def action_finish(self) -> None:
        self.dismiss(self.record)

    def action_copy_url(self) -> None:
        if self.start is None:
            return
        self.app.copy_to_clipboard(self.start.authorization_url)
        self.notify("The URL was sent to your clipboard (OSC 52). If nothing arrives, select "
                    "the URL on screen instead.", title="Copied")

    async def action_open_browser(self) -> None:
        if self.start is None:
            return
        try:
            opened = await asyncio.to_thread(webbrowser.open, self.start.authorization_url)
        except webbrowser.Error as exc:
            opened, why = False, str(exc)
        else:
            why = "no browser answered"
        if opened:
            self.notify("Opened the URL in your browser.")
        else:
            self.notify(f"No browser could be opened ({why}): scan the QR code or copy the URL.",
                        severity="warning")

    def action_full_qr(self) -> None:
        if self.start is not None:
            self.app.push_screen(QRFullScreen(self.start.authorization_url, self._qr_style()))

    def action_show_url(self) -> None:
        """The URL alone: printed on the plain terminal (which wraps it softly, so a mouse
        selection copies one line), or on a screen of its own where the app cannot step aside."""
        if self.start is None:
            return
        url = self.start.authorization_url
        driver = getattr(self.app, "_driver", None)
        if driver is not None and getattr(driver, "can_suspend", False) and not self.app.is_headless:
            with self.app.suspend():
                print("\x1b[2J\x1b[H" + url + "\n")
                try:
                    input("Select the URL with the mouse, then press enter to go back. ")
                except EOFError:
                    pass
            return
        self.app.push_screen(URLScreen(url))

    def action_restart(self) -> None:
        if self.user_id and not self.busy:
            self.run_worker(self._start_login(self.user_id), group="start", exclusive=True)

    def action_focus_users(self) -> None:
        users = self.query_one("#user-list", OptionList)
        if users.option_count:
            if users.highlighted is None:
                users.highlighted = 0
            users.focus()


def _within(need: Size, have: Size) -> bool:
    return need.width <= have.width and need.height <= have.height
