"""One user: every field of the record (tokens masked), the audit trail, and actions."""

from __future__ import annotations

import re
import time

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from ..tokens import Status, TokenRecord, format_duration, format_time, mask
from ..ui.hints import DETAIL, with_keys
from ..ui.messages import reason
from ..ui.styles import styles_path
from ..users import markup_safe, shown
from ..widgets.board_view import ago
from ..widgets.status_badge import MEANINGS, StatusBadge
from .modals.confirm import ConfirmScreen


class Loaded(Message):
    def __init__(self, record: TokenRecord | None, events: list, error: str | None = None,
                 facts=None) -> None:
        super().__init__()
        self.record = record
        self.events = events
        self.error = error
        self.facts = facts   # AccountFacts: stored usage and plan, or None


class ActionDone(Message):
    def __init__(self, text: str, severity: str = "information", *, reload: bool = True,
                 close: bool = False) -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.reload = reload
        self.close = close


class ProfileShown(Message):
    def __init__(self, text: Text) -> None:
        super().__init__()
        self.text = text


class DetailScreen(Screen[None]):
    CSS_PATH = styles_path("detail.tcss")
    HELP_TITLE = "user detail screen"
    HELP_STATUSES = True
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", tooltip="Back to the board"),
        Binding("r", "refresh", "Refresh", tooltip="Refresh this user's token now"),
        Binding("t", "test", "Test", tooltip="Call the profile endpoint: whose token is it?"),
        Binding("d,delete", "logout", "Logout", tooltip="Log this user out (asks first)"),
        Binding("l", "login", "Re-login", tooltip="Log this user in again"),
    ]

    def __init__(self, user_id: str) -> None:
        super().__init__()
        self.user_id = user_id
        # Only the masked record is kept: the screen never holds a usable token.
        self.record: TokenRecord | None = None
        self.events: list = []
        self.facts = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield Label(f"User {markup_safe(self.user_id)}", id="detail-title")
            yield StatusBadge(id="detail-status")
            yield Static("loading…", id="detail-fields")
            yield Label("Usage and plan", classes="detail-heading")
            yield Static("", id="detail-usage")
            yield Label("Test", classes="detail-heading")
            yield Static("press t to ask the provider whose token this is", id="detail-profile")
            yield Label("Audit trail", classes="detail-heading")
            yield Static("", id="detail-audit")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load()
        self.set_interval(1.0, self._tick)   # the countdowns move

    # -- loading -----------------------------------------------------------------------

    @work(group="detail-load", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        service = self.app.service
        try:
            record = await service.get_record(self.user_id)
            events = await service.audit_trail(self.user_id, 50)
        except Exception as exc:
            self.post_message(Loaded(None, [], reason(exc)))
            return
        try:  # stored answers only; usage is optional, the token fields still show
            facts = (await service.usage_of([self.user_id])).get(self.user_id)
        except Exception as exc:  # noqa: BLE001
            facts = None
            events = list(events)
            self.notify(f"usage not read: {reason(exc)}", severity="warning")
        if record is not None:
            record = record.evolve(access_token=mask(record.access_token),
                                   refresh_token=mask(record.refresh_token))
        self.post_message(Loaded(record, events, facts=facts))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.error:
            self.notify(message.error, title="Cannot read this user", severity="error", timeout=10)
            return
        self.record, self.events, self.loaded = message.record, message.events, True
        self.facts = message.facts
        with self.app.batch_update():
            self._show_fields()
            self._show_usage()
            self._show_audit()

    def _status(self) -> Status | None:
        if self.record is None:
            return None
        return self.app.service.status_of(self.record, self.app.clock())

    def _show_fields(self) -> None:
        if not self.loaded:
            return
        fields = self.query_one("#detail-fields", Static)
        badge = self.query_one("#detail-status", StatusBadge)
        record = self.record
        if record is None:
            badge.display = False
            fields.update(f"User '{markup_safe(self.user_id)}' is not logged in: no token is stored. "
                          "Press l to log in, escape to go back.")
            return
        now = self.app.clock()
        status = self._status()
        badge.display = True
        if badge.status is not status:
            badge.set_status(status)
        left = record.expires_at - now
        expiry = (f"in {format_duration(left)}" if left > 0 else f"{format_duration(-left)} ago") \
            + f" ({format_time(record.expires_at)})"
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        org = record.organization_name or ""
        if record.organization_uuid:
            org = f"{org} ({record.organization_uuid})" if org else record.organization_uuid
        rows = [
            ("status", f"{status.value.replace('_', ' ')}: {MEANINGS[status]}"),
            ("expires", expiry),
            ("account", record.account_email or "unknown"),
            ("account uuid", record.account_uuid or "—"),
            ("organization", org or "—"),
            ("subscription", record.subscription_type or "—"),
            ("scopes", " ".join(record.scopes) or "—"),
            ("access token", record.access_token or "—"),
            ("refresh token", record.refresh_token or "none (cannot refresh)"),
            ("source", record.source or "—"),
            ("version", str(record.version)),
            ("refreshes", f"{record.refresh_count}, last {format_time(record.last_refresh_at)}"),
            ("last used", f"{ago(now - record.last_used)} ({format_time(record.last_used)})"
             if record.last_used else "never"),
            ("created", format_time(record.created_at)),
            ("updated", format_time(record.updated_at)),
        ]
        if record.last_refresh_error:
            rows.append(("last error", f"{record.last_refresh_error} ({format_time(record.last_refresh_error_at)}, "
                                       f"{record.refresh_failures} failure"
                                       f"{'s' if record.refresh_failures != 1 else ''} in a row)"))
        for name, value in rows:
            table.add_row(name, Text(shown(value, 4096)))  # stored text: never markup, never controls
        fields.update(table)

    def _tick(self) -> None:
        self._show_fields()
        self._show_usage()

    def _show_usage(self) -> None:
        """Every window with its bar and reset countdown, extra usage, plan, organisation,
        when and by whom it was fetched, and the last usage and profile errors."""
        if not self.loaded:
            return
        from ..usage import bar, level

        widget = self.query_one("#detail-usage", Static)
        facts = self.facts
        if facts is None or not (facts.usage or facts.usage_error or facts.profile or facts.profile_error):
            widget.update("not fetched yet (the refresher, or claude-console usage --user U --fresh, asks Claude)")
            return
        now = self.app.clock()
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        profile = facts.profile_model
        rows = [("plan", facts.plan or "unknown")]
        if profile is not None:
            org = profile.organization_name or "—"
            if profile.organization_uuid:
                org += f" ({profile.organization_uuid})"
            rows += [("organization", org),
                     ("org type", profile.organization_type or "—"),
                     ("rate limit tier", profile.rate_limit_tier or "—"),
                     ("subscription", profile.subscription_status or "—"),
                     ("display name", profile.display_name or "—")]
        usage = facts.usage_model
        for w in usage.windows if usage else ():
            word = {"high": "  at or above 80%", "full": "  at or above 95%"}.get(level(w.utilization), "")
            resets = f"  resets in {format_duration(w.resets_at - now)}" if w.resets_at else ""
            rows.append((w.label, f"{bar(w.utilization, 10)} {w.utilization:.0f}%{word}{resets}"))
        if usage is not None and usage.extra is not None:
            extra = usage.extra
            rows.append(("extra usage", "on" if extra.is_enabled else "off"
                         + (f", {extra.used_credits:g} of {extra.monthly_limit:g} credits"
                            if extra.used_credits is not None and extra.monthly_limit is not None else "")))
        rows.append(("fetched", f"{format_time(facts.usage_fetched_at)} by {facts.usage_fetched_by}"
                     if facts.usage_fetched_at else "never"))
        if facts.profile_fetched_at:
            rows.append(("profile fetched", format_time(facts.profile_fetched_at)))
        if facts.usage_error:
            rows.append(("usage error", facts.usage_error))
        if facts.profile_error:
            rows.append(("profile error", facts.profile_error))
        for name, value in rows:
            table.add_row(name, Text(shown(value, 4096)))
        widget.update(table)

    def _show_audit(self) -> None:
        audit = self.query_one("#detail-audit", Static)
        if not self.events:
            audit.update("no events recorded for this user")
            return
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        table.add_column("when (UTC)", no_wrap=True)
        table.add_column("action", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("by", max_width=28)       # wrapped between words, never inside one
        table.add_column("detail")
        for event in self.events:
            table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.ts)), event.action,
                          Text("ok") if event.ok else Text("FAILED", style="bold"),
                          Text(shown(event.actor, 256)), Text(shown(durations_in_words(event.detail), 4096)))
        audit.update(table)

    # -- actions -----------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss(None)

    def action_refresh(self) -> None:
        self._refresh()

    @work(group="detail-action", exit_on_error=False)
    async def _refresh(self) -> None:
        try:
            record = await self.app.service.refresh(self.user_id, force=True)
        except Exception as exc:
            self.post_message(ActionDone(f"refresh failed: {reason(exc)}", "error"))
        else:
            left = format_duration(record.expires_at - self.app.clock())
            self.post_message(ActionDone(f"{self.user_id}: refreshed; expires in {left}"))

    def action_test(self) -> None:
        self.query_one("#detail-profile", Static).update("asking the provider…")
        self._test()

    @work(group="detail-action", exit_on_error=False)
    async def _test(self) -> None:
        try:
            profile = await self.app.service.profile(self.user_id)
        except Exception as exc:
            text = Text(f"test failed: {reason(exc)}")
            self.post_message(ProfileShown(text))
            self.post_message(ActionDone(f"test failed: {reason(exc)}", "error"))
            return
        account = profile.get("account") or {}
        org = profile.get("organization") or {}
        email = account.get("email_address") or account.get("email") or "unknown"
        text = Text.assemble(("✓ the token works: ", "bold"), "it belongs to ", (email, "bold"))
        if account.get("uuid"):
            text.append(f" (account {account['uuid']})")
        org_parts = [org.get("name"), f"({org['uuid']})" if org.get("uuid") else None]
        if any(org_parts):
            text.append(", organization " + " ".join(p for p in org_parts if p))
        stored = self.record.account_email if self.record else None
        if stored and email != stored:
            text.append(f"\n! the stored account is {stored}: this token belongs to someone else",
                        style="bold")
        self.post_message(ProfileShown(text))
        self.post_message(ActionDone(f"{self.user_id}: the token belongs to {email}"))

    @on(ProfileShown)
    def _profile_shown(self, message: ProfileShown) -> None:
        self.query_one("#detail-profile", Static).update(message.text)

    def action_logout(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._logout()

        self.app.push_screen(ConfirmScreen(f"Log out user '{self.user_id}'?",
                                           detail="Their stored tokens are deleted; they must log in again."),
                             answered)

    @work(group="detail-action", exit_on_error=False)
    async def _logout(self) -> None:
        try:
            removed = await self.app.service.logout(self.user_id)
        except Exception as exc:
            self.post_message(ActionDone(f"log out failed: {reason(exc)}", "error"))
        else:
            self.post_message(ActionDone(f"{self.user_id}: logged out" if removed
                                         else f"{self.user_id}: was not logged in",
                                         reload=False, close=True))

    def action_login(self) -> None:
        from .login import LoginScreen   # read when first used: a faster start

        def done(record: TokenRecord | None) -> None:
            if record is not None:
                self.notify(f"{record.user_id} logged in as {record.account_email or 'an unknown account'}")
                self.load()

        self.app.push_screen(LoginScreen(user_id=self.user_id), done)

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        self.notify(with_keys(message.text, DETAIL), severity=message.severity,
                    timeout=10 if message.severity == "error" else 4)
        if message.close:
            self.dismiss(None)
        elif message.reload:
            self.load()


_SECONDS = re.compile(r"\b(-?\d+)s\b")


def durations_in_words(detail: str) -> str:
    """``expires in 28799s`` -> ``expires in 7h 59m``: the audit trail stores seconds."""
    return _SECONDS.sub(lambda m: format_duration(int(m.group(1))), detail or "")
