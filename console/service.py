"""The auth service: the one engine behind the CLI, the TUI, the HTTP API and the SDK.

It owns three guarantees. Single flight: callers for one user share one refresh in a
process (a shared task), across processes (the primary tier's lock, then a re-read), and
across replicas (the database tier's transaction lock and compare-and-swap). Rotation
safety: the rotated refresh token is saved before anything else, with a compare-and-swap
on the version that was read, so a late writer cannot roll a newer token back. Nothing
but ``invalid_grant`` logs a user out.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

from . import oauth as oauth_mod
from .config import Settings, load_settings
from .errors import (AccountBlocked, ConsoleError, InvalidGrant, LoginError, NeedsLogin, NotLoggedIn,
                     NotYetStored, OAuthError, StaleWrite, StorageError, TransientOAuthError)
from .journal import RescueJournal
from .refusals import Answer, refusal
from .store import AuditEvent, Changes, Hierarchy, PendingLogin, TierHealth, build_store
from .tokens import Status, TokenRecord, count_text, format_span, token_status
from .logs import redact
from .users import fix_command, resolve_user

log = logging.getLogger("console.service")

TOUCH_INTERVAL = 60.0
HOLD_TIMEOUT = 30.0   # aclose waits this long for a held token that no journal could take


@dataclass
class Held:
    """A rotated record the store has not taken yet (kept here and, when it could, in the journal)."""

    record: TokenRecord
    base_version: int
    slot: int | None
    reason: str


@dataclass
class LoginStart:
    user_id: str
    authorization_url: str
    state: str
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "authorization_url": self.authorization_url,
                "state": self.state, "expires_at": self.expires_at}


def _default_actor(face: str) -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{face}:{user}@{socket.gethostname()}"


def _start_task(coro) -> asyncio.Task:
    """A task that starts at once where Python can (3.12+), so the shared refresh is not
    queued behind every caller that is about to wait for it."""
    if hasattr(asyncio, "eager_task_factory"):
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
    return asyncio.ensure_future(coro)


class Clock(Protocol):
    """The service's clock: wall time for token expiry, pending logins and the audit; monotonic
    time for the memory cache. A test passes its own and moves it forward instead of sleeping
    (as the emulator's ``clock`` and the TUI's do)."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock (the default)."""

    @staticmethod
    def now() -> float:
        return time.time()

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


def login_hint(user_id: str) -> str:
    return f"run: {fix_command('login', user_id)}"


def user_line(exc: OAuthError, user_id: str) -> tuple[str, str]:
    """A refusal's line and hint (console/refusals.py) with the user named."""
    if exc.kind is None:
        return exc.message, exc.hint or login_hint(user_id)
    answer = Answer("", exc.status or 0, exc.error, exc.description)
    return refusal(exc.kind).line(answer, user=user_id)


def blocked_error(user_id: str, record: TokenRecord, status: Status) -> AccountBlocked:
    """The line for a record Claude refused earlier (``account_disabled``, ``oauth_not_allowed``)."""
    said = (record.last_refresh_error or "").split(":", 1)[-1].strip()
    row = refusal(status.value)
    _, hint = row.line(Answer("", 0), user=user_id)
    what = "disabled the organization" if status is Status.ACCOUNT_DISABLED else \
        "does not allow OAuth for the organization"
    return AccountBlocked(f"user {user_id!r} is {status.value}: Claude {what} (it said \"{said}\")",
                          hint=hint, kind=status.value, description=said)


class AuthService:
    """Get a valid token, refresh (single flight), log in, log out, report status."""

    def __init__(self, settings: Settings | None = None, store: Hierarchy | None = None,
                 oauth: "oauth_mod.OAuthClient | None" = None, *, face: str = "sdk",
                 clock: Clock | None = None) -> None:
        self.settings = settings or load_settings()
        self.clock = clock or SystemClock()
        self.store = store if store is not None else build_store(self.settings)
        self._oauth = oauth
        self.actor = _default_actor(face)
        self._mem: dict[str, tuple[TokenRecord, float, float]] = {}
        self._inflight: dict[str, asyncio.Task] = {}
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task] = set()  # bookkeeping kept off the callers' path
        self._listeners: list = []  # callables (event, seconds) told of every audited action
        self.journal = RescueJournal(self.settings.journal_file, getattr(self.store.primary, "keyring", None))
        self._held: dict[str, Held] = {}             # rotated but not yet stored, by user
        self._retrying: dict[str, asyncio.Task] = {}
        self._recovered_at_start = False
        self.rescue_window: tuple[float, float] | None = None  # last answer-to-journal times (seconds)
        # At exit, how long a token held in memory only (no journal took it) is retried.
        self.hold_timeout = float(os.environ.get("CLAUDE_CONSOLE_HOLD_TIMEOUT") or HOLD_TIMEOUT)
        self.lost_at_exit: list[str] = []           # users whose held token that ran out
        # Test seam: seconds to wait between the journal write and the store write.
        self._save_delay = float(os.environ.get("CLAUDE_CONSOLE_TEST_SAVE_DELAY") or 0)
        # A write on another replica evicts our memory entry (via the cache's invalidations).
        self.store.on_invalidate(self.forget)

    @property
    def oauth(self) -> "oauth_mod.OAuthClient":
        if self._oauth is None:
            self._oauth = oauth_mod.OAuthClient(self.settings)
        return self._oauth

    def user(self, user_id: str | None) -> str:
        """The one place a call's user is resolved (the default when None) and checked."""
        return resolve_user(user_id, self.settings.default_user)

    def _later(self, coro) -> None:
        """Run bookkeeping (audit, last_used) after the callers are answered; ``aclose`` waits."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        for task in list(self._inflight.values()):
            task.cancel()
        await self._last_tries()
        if self._oauth is not None:
            await self._oauth.aclose()
        await self.store.close()

    async def __aenter__(self) -> "AuthService":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- the storage seam: subclasses may override these two ---------------------------

    async def _load_tokens(self, user_id: str) -> TokenRecord | None:
        return await self.store.get(user_id)

    async def _save_tokens(self, user_id: str, record: TokenRecord,
                           expected_version: int | None = None) -> TokenRecord:
        return await self.store.put(record, expected_version)

    async def _load_fresh(self, user_id: str) -> TokenRecord | None:
        """A read that skips every cache (after taking the refresh lock)."""
        if type(self)._load_tokens is not AuthService._load_tokens:
            return await self._load_tokens(user_id)
        return await self.store.get_fresh(user_id)

    # -- writes for the faces that bring their own tokens (transfer, the SDK) -------------

    async def read_fresh(self, user_id: str) -> TokenRecord | None:
        """The stored record, past every cache: what a compare-and-swap write must start from.
        Call it under ``store.locked(user_id)``, as ``store_record`` expects."""
        return await self._load_fresh(user_id)

    async def store_record(self, record: TokenRecord, *, expected_version: int, action: str,
                           detail: str = "") -> TokenRecord:
        """Write tokens a face brought (an import, the SDK's ``store_tokens``) the way the
        service writes its own: a compare-and-swap on ``expected_version`` (the version read
        with ``read_fresh``, 0 for a new user; ``StaleWrite`` if it moved), this process's
        memory entry dropped, and ``action`` audited."""
        saved = await self._save_tokens(record.user_id, record, expected_version=expected_version)
        self.forget(record.user_id)
        await self._audit(action, record.user_id, True, detail)
        return saved

    async def record_event(self, action: str, user_id: str, ok: bool, detail: str) -> None:
        """Audit an action done outside the service (a backup, an export), with this face's
        actor, and tell the listeners, as the service's own actions are."""
        await self._audit(action, user_id, ok, detail)

    def remembered(self, user_id: str) -> TokenRecord | None:
        """The record this process last loaded for the user, fresh or not, without a store
        read: the seed's synchronous ``get_headers`` has nothing else to go by."""
        hit = self._mem.get(user_id)
        return hit[0] if hit is not None else None

    # -- memory cache ------------------------------------------------------------------

    def _remember(self, record: TokenRecord) -> None:
        # Never past ``memory_cache_ttl`` after the primary last showed this record: a logout
        # or a refresh elsewhere is seen within that, even if the cache missed it.
        confirmed_age = getattr(self.store, "confirmed_age", None)
        age = (confirmed_age(record) if confirmed_age is not None else None) or 0.0
        fresh_until = self.clock.monotonic() + self.settings.memory_cache_ttl - age
        self._mem[record.user_id] = (record, fresh_until, record.expires_at - self.settings.refresh_buffer)

    def _memory_hit(self, uid: str) -> TokenRecord | None:
        """The remembered record while it is fresh and not yet due for refresh."""
        hit = self._mem.get(uid)
        if hit is not None and hit[1] > self.clock.monotonic() and hit[2] > self.clock.now():
            return hit[0]
        return None

    def forget(self, user_id: str | None = None) -> None:
        if user_id is None:
            self._mem.clear()
        else:
            self._mem.pop(user_id, None)

    # -- reading -----------------------------------------------------------------------

    async def get_record(self, user_id: str | None = None) -> TokenRecord | None:
        uid = self.user(user_id)
        await self._rescue(uid)
        return await self._load_tokens(uid)

    async def cached_record(self, user_id: str | None = None) -> TokenRecord | None:
        """Like ``get_record``, but served from the memory cache while it is fresh
        (``memory_cache_ttl``): for status reads that come often, such as the API's."""
        uid = self.user(user_id)
        hit = self._memory_hit(uid)
        if hit is not None:
            return hit
        await self._rescue(uid)
        record = await self._load_tokens(uid)
        if record is not None and self.status_of(record) is Status.ACTIVE:
            self._remember(record)
        return record

    def status_of(self, record: TokenRecord, now: float | None = None) -> Status:
        return token_status(record, self.clock.now() if now is None else now, self.settings.refresh_buffer)

    async def get_access_token(self, user_id: str | None = None, auto_refresh: bool | None = None) -> str:
        """A valid access token, refreshing when needed. Raises a ``ConsoleError`` if none."""
        uid = self.user(user_id)
        hit = self._memory_hit(uid)
        if hit is not None:
            return hit.access_token
        record = await self._valid_record(uid, self.settings.auto_refresh if auto_refresh is None else auto_refresh)
        return record.access_token

    async def _valid_record(self, uid: str, auto_refresh: bool) -> TokenRecord:
        running = self._inflight.get(uid)
        if running is not None and auto_refresh:  # a refresh is under way: share it
            try:
                return await asyncio.shield(running)
            except NotYetStored as exc:  # the live token, held until the store takes it
                return exc.record
        await self._rescue(uid)
        held = self._held.get(uid)
        if held is not None and self.status_of(held.record) is Status.ACTIVE:
            return held.record  # newer than anything stored: the store is behind
        record = await self._load_tokens(uid)
        if record is None:
            raise NotLoggedIn(f"user {uid!r} is not logged in", hint=login_hint(uid))
        status = self.status_of(record)
        if status is Status.ACTIVE:
            self._remember(record)
            await self._touch(uid)
            return record
        if status is Status.NEEDS_LOGIN:
            raise NeedsLogin(f"user {uid!r} must log in again: the refresh token was rejected",
                             hint=login_hint(uid))
        if status.blocked:
            raise blocked_error(uid, record, status)
        if status is Status.EXPIRED:
            if record.long_lived:
                raise NeedsLogin(f"the long-lived token of user {uid!r} has expired (long-lived tokens are "
                                 "never refreshed)", hint=login_hint(uid) + " --long-lived")
            raise NeedsLogin(f"the token of user {uid!r} has expired and there is no refresh token",
                             hint=login_hint(uid))
        if not auto_refresh:
            if status is Status.EXPIRING:
                return record
            raise NeedsLogin(f"the token of user {uid!r} has expired and auto_refresh is off",
                             hint=f"run: {fix_command('refresh', uid)}")
        try:
            fresh = await self._refresh_single_flight(uid, record, force=False)
        except NotYetStored as exc:
            fresh = exc.record
        except (TransientOAuthError, StaleWrite):
            if status is Status.EXPIRING:  # still valid for a while: serve it, retry next time
                return record
            raise
        await self._touch(uid)
        return fresh

    async def _touch(self, uid: str) -> None:
        now = self.clock.now()
        if now - self._touched.get(uid, 0.0) >= TOUCH_INTERVAL:
            self._touched[uid] = now
            self._later(self._record_use(uid, now))

    async def _record_use(self, uid: str, when: float) -> None:
        try:
            await self.store.touch(uid, when)
        except ConsoleError as exc:
            log.debug("last_used for %s not recorded: %s", uid, exc)

    async def hand_out(self, user_id: str | None, to: str) -> TokenRecord:
        """A valid access token for a process that does not refresh (Claude Code run by ``exec``,
        a sidecar): refreshed first when inside the buffer, audited. The console stays the one
        refresher of the account; callers pass on ``access_token`` and ``expires_at`` only."""
        uid = self.user(user_id)
        record = await self._valid_record(uid, self.settings.auto_refresh)
        await self._audit("token_handed_out", uid, True, f"to {to}")
        return record

    async def ensure_authenticated(self, user_id: str | None = None) -> bool:
        try:
            return bool(await AuthService.get_access_token(self, user_id))
        except ConsoleError:
            return False

    def get_headers(self, access_token: str) -> dict[str, str]:
        return self.oauth.api_headers(access_token)

    # -- refreshing --------------------------------------------------------------------

    async def refresh(self, user_id: str | None = None, *, force: bool = True) -> TokenRecord:
        """Refresh now (``force``) or only if needed; shares any refresh already running."""
        uid = self.user(user_id)
        await self._rescue(uid)
        try:
            record = await self._load_fresh(uid)  # not the cache: a forced refresh must see the newest
        except StorageError as exc:
            held = self._held.get(uid)
            if held is None:
                raise
            raise NotYetStored(f"user {uid}'s new token is held locally, not yet stored ({exc.message})",
                               hint="it is written as soon as the store takes it; nothing was refreshed",
                               record=held.record) from None
        if record is None:
            raise NotLoggedIn(f"user {uid!r} is not logged in", hint=login_hint(uid))
        return await self._refresh_single_flight(uid, record, force=force)

    async def _refresh_single_flight(self, uid: str, seen: TokenRecord, force: bool) -> TokenRecord:
        task = self._inflight.get(uid)
        if task is None:
            task = _start_task(self._refresh_locked(uid, seen, force))
            if not task.done():  # an eager task may already have finished
                self._inflight[uid] = task
            task.add_done_callback(lambda t, uid=uid: self._finish(uid, t))
        return await asyncio.shield(task)

    def _finish(self, uid: str, task: asyncio.Task) -> None:
        if self._inflight.get(uid) is task:
            del self._inflight[uid]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter already got it

    async def _refresh_locked(self, uid: str, seen: TokenRecord, force: bool) -> TokenRecord:
        async with self.store.locked(uid):
            current = await self._load_fresh(uid)
            if current is None:
                raise NotLoggedIn(f"user {uid!r} is not logged in", hint=login_hint(uid))
            now = self.clock.now()
            status = self.status_of(current, now)
            # A stored record's version moves on every write; a token from the environment has none.
            changed = current.version != seen.version if seen.version else \
                current.access_token != seen.access_token
            if changed and status in (Status.ACTIVE, Status.EXPIRING):
                self._remember(current)
                return current  # someone refreshed (or logged in) while we waited
            if not force and status is Status.ACTIVE:
                self._remember(current)
                return current
            if status is Status.NEEDS_LOGIN:
                raise NeedsLogin(f"user {uid!r} must log in again: the refresh token was rejected",
                                 hint=login_hint(uid))
            if not current.refresh_token:
                if current.long_lived:
                    raise NeedsLogin(f"user {uid!r} holds a long-lived token, which is never refreshed",
                                     hint=login_hint(uid) + " --long-lived, when it expires")
                raise NeedsLogin(f"user {uid!r} has no refresh token", hint=login_hint(uid))
            current = await self._land_before_spending(uid, current)
            # Lock before spending: every lock the save needs is taken now, or nothing is spent.
            lock_row = getattr(self.store.primary, "lock_row", None)
            if lock_row is not None and current.source == self.store.primary.name:
                await lock_row(uid)
            asked = self.clock.monotonic()
            try:
                scoped = (current.scopes,) if self.settings.refresh_scope else ()  # claude_oauth.refresh_scope
                answer = await self.oauth.refresh(current.refresh_token, *scoped)
            except InvalidGrant as exc:
                return await self._refresh_rejected(uid, current, exc)
            except AccountBlocked as exc:
                raise await self._refresh_blocked(uid, current, exc) from None
            except OAuthError as exc:
                await self._refresh_failed(uid, current, exc)
                raise
            answered = time.monotonic()
            fresh = current.evolve(
                access_token=answer.access_token,
                refresh_token=answer.refresh_token or current.refresh_token,
                expires_at=answer.expires_at,
                scopes=answer.scopes or current.scopes,
                account_email=answer.account_email or current.account_email,
                account_uuid=answer.account_uuid or current.account_uuid,
                organization_uuid=answer.organization_uuid or current.organization_uuid,
                organization_name=answer.organization_name or current.organization_name,
                refresh_count=current.refresh_count + 1,
                last_refresh_at=now, last_refresh_error=None, refresh_failures=0, needs_login=False,
            )
            # The old refresh token is dead now: the new one goes to the rescue journal before
            # anything else, then to the store; only then is the journal entry done.
            slot, journal_error = await self._journal_append(fresh, current.version)
            if slot is not None:  # (kill -9 window, crash window): bench/bench_rescue.py
                self.rescue_window = (self.journal.written_at - answered, time.monotonic() - answered)
            if self._save_delay:
                await asyncio.sleep(self._save_delay)
            try:
                saved = await self._save_tokens(uid, fresh, expected_version=current.version)
            except StaleWrite:
                if slot is not None:
                    self.journal.mark_done(slot)
                raise
            except StorageError as exc:
                raise self._hold(fresh, current.version, slot, exc, journal_error) from None
            if slot is not None:
                self.journal.mark_done(slot)
        self._remember(saved)
        self._later(self._audit("refresh", uid, True, f"expires in {int(saved.expires_at - self.clock.now())}s",
                                seconds=self.clock.monotonic() - asked))
        return saved

    async def _refresh_rejected(self, uid: str, current: TokenRecord, exc: InvalidGrant) -> TokenRecord:
        # Another process that ignores our lock may have spent the token: re-read first.
        again = await self._load_fresh(uid)
        if again is not None and again.version != current.version and \
                self.status_of(again) in (Status.ACTIVE, Status.EXPIRING):
            self._remember(again)
            return again
        self.forget(uid)
        await self._note_refresh_failure(uid, current, redact(str(exc)), needs_login=True, quiet=(StaleWrite,))
        await self._audit("refresh_failed", uid, False, str(exc))
        message, hint = user_line(exc, uid)
        raise NeedsLogin(message, hint=hint) from exc

    async def _refresh_blocked(self, uid: str, current: TokenRecord, exc: AccountBlocked) -> AccountBlocked:
        """Claude refused the organization: keep the tokens, mark the record so nothing
        automatic refreshes it again; a login or ``refresh --user`` clears it."""
        self.forget(uid)
        await self._note_refresh_failure(uid, current, f"{exc.kind}: {exc.description}", needs_login=True)
        await self._audit("refresh_failed", uid, False, str(exc))
        message, hint = user_line(exc, uid)
        return AccountBlocked(message, hint=hint, status=exc.status, error=exc.error, kind=exc.kind,
                              exit_code=exc.exit_code, description=exc.description)

    async def _refresh_failed(self, uid: str, current: TokenRecord, exc: OAuthError) -> None:
        """Record the failure; the tokens themselves stay exactly as they were."""
        await self._note_refresh_failure(uid, current, redact(str(exc)))
        await self._audit("refresh_failed", uid, False, str(exc))

    async def _note_refresh_failure(self, uid: str, current: TokenRecord, error: str, *,
                                    needs_login: bool = False,
                                    quiet: tuple[type[Exception], ...] = (StaleWrite, ConsoleError)) -> None:
        """Store why a refresh failed (and, for a refusal, that nothing automatic may refresh
        again) on the record that was read, by compare-and-swap; the tokens stay as they were.
        A note that cannot be stored (``quiet``) is only logged: the failure itself is reported."""
        if current.source == "env":
            return
        noted = current.evolve(last_refresh_error=error, last_refresh_error_at=self.clock.now(),
                               refresh_failures=current.refresh_failures + 1,
                               **({"needs_login": True} if needs_login else {}))
        try:
            await self._save_tokens(uid, noted, expected_version=current.version)
        except quiet as write_exc:
            log.debug("failure note for %s not stored: %s", uid, write_exc)

    # -- rotated but not yet stored: the rescue journal, holding, landing ----------------

    async def _journal_append(self, record: TokenRecord, base_version: int) -> tuple[int | None, str | None]:
        """Write the rotated record to the rescue journal; ``(slot, None)`` or ``(None, why not)``."""
        try:
            return await self.journal.append_durably(record, base_version), None
        except StorageError as exc:
            log.error("user %s: the rescue journal did not take the new token (%s); it is held in "
                      "memory until the store takes it", record.user_id, exc.message)
            return None, exc.message

    def _hold(self, record: TokenRecord, base_version: int, slot: int | None, exc: StorageError,
              journal_error: str | None = None, action: str = "refresh") -> NotYetStored:
        """Keep a rotated record the store refused, retry it in the background, and say so."""
        uid = record.user_id
        self._held[uid] = Held(record, base_version, slot, exc.message)
        self._remember(record)  # the live token: served while the store is behind
        self._retry_later(uid)
        where = f"in the rescue journal {self.journal.path} and in memory" if slot is not None else \
            f"in this process's memory only (the rescue journal failed too: {journal_error})"
        log.warning("user %s's new token is held locally, not yet stored: %s", uid, exc.message)
        self._later(self._audit(action, uid, True, f"held locally, not yet stored: {exc.message}"))
        return NotYetStored(f"user {uid}'s new token is held locally, not yet stored ({exc.message})",
                            hint=f"it is kept {where} and written as soon as the store takes it; "
                                 "nobody needs to log in again", record=record)

    def held_users(self) -> dict[str, str]:
        """Users whose rotated token is held locally, not yet stored: ``{user: why}``. Counts this
        process's held tokens and any other process's unfinished journal entries."""
        out = {uid: held.reason for uid, held in self._held.items()}
        for entry in self.journal.pending():
            out.setdefault(entry.user_id, "an unfinished rescue journal entry")
        return out

    def held_in_memory_only(self) -> list[str]:
        """Users whose rotated token no journal took: lost if this process ends before it lands."""
        return sorted(uid for uid, held in self._held.items() if held.slot is None)

    def _retry_later(self, uid: str) -> None:
        task = self._retrying.get(uid)
        if task is None or task.done():
            self._retrying[uid] = asyncio.ensure_future(self._keep_trying(uid))

    async def _keep_trying(self, uid: str) -> None:
        delay = max(0.05, self.settings.backoff_base)
        while uid in self._held:
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(self.settings.backoff_cap, 1.0))
            held = self._held.get(uid)
            if held is None:
                return
            try:
                await self._land(held.record, held.base_version, held.slot)
            except ConsoleError as exc:
                held.reason = exc.message
                log.info("user %s: the held token is still not stored (%s); retrying in %.1fs",
                         uid, exc.message, delay)

    async def _land(self, record: TokenRecord, base: int, slot: int | None, *, locked: bool = False) -> str:
        """Write a rotated record the store missed, as a compare-and-swap on the version it was
        based on: ``recovered``; or find it landed already, or superseded by a newer write
        (a login, a logout): ``landed`` / ``superseded``. Store errors propagate."""
        uid = record.user_id
        if not locked:
            async with self.store.locked(uid):
                return await self._land(record, base, slot, locked=True)
        stored = await self.store.get_fresh(uid)
        stored_version = stored.version if stored is not None and stored.source != "env" else 0
        if stored is not None and stored.refresh_token == record.refresh_token:
            outcome = "landed"
        elif stored_version != base or (stored is not None and stored.refresh_count >= record.refresh_count
                                        and stored_version):
            outcome = "superseded"
        else:
            saved = await self.store.put(record, expected_version=base)
            self.forget(uid)
            self._remember(saved)
            outcome = "recovered"
        if slot is not None:
            self.journal.mark_done(slot)
        held = self._held.get(uid)
        if held is not None and held.record.refresh_token == record.refresh_token:
            del self._held[uid]
        if outcome == "recovered":
            await self._audit("recovery", uid, True,
                              f"rotated token written back from the rescue journal (version {base} -> {base + 1})")
        elif outcome == "superseded":
            log.info("user %s: a held token was superseded by a newer write; dropped", uid)
        return outcome

    async def recover(self) -> int:
        """Write back every unfinished rescue journal entry newer than the stored record (run at
        start); returns how many were recovered. A store that is down leaves them for later."""
        self._recovered_at_start = True
        recovered = 0
        for entry in self.journal.pending():
            if entry.user_id in self._held:
                continue  # ours: the retry loop has it
            try:
                recovered += await self._land(entry.record, entry.base_version, entry.slot) == "recovered"
            except ConsoleError as exc:
                log.warning("user %s's new token is held locally, not yet stored: %s", entry.user_id, exc.message)
                self._held.setdefault(entry.user_id, Held(entry.record, entry.base_version, entry.slot, exc.message))
                self._retry_later(entry.user_id)
        return recovered

    async def _rescue(self, uid: str) -> None:
        """Before reading a user: land an unfinished journal entry for them (cheap when none:
        a look at the journal's shared memory map, no system call)."""
        if not self._recovered_at_start:
            await self.recover()
            return
        if uid in self._held or not self.journal.may_hold(uid):
            return
        for entry in self.journal.pending(uid):
            try:
                await self._land(entry.record, entry.base_version, entry.slot)
            except ConsoleError as exc:
                log.warning("user %s's new token is held locally, not yet stored: %s", uid, exc.message)
                self._held.setdefault(uid, Held(entry.record, entry.base_version, entry.slot, exc.message))
                self._retry_later(uid)

    async def _land_before_spending(self, uid: str, current: TokenRecord) -> TokenRecord:
        """Inside the refresh lock: a held or journalled rotation of ``current`` must land before
        its (dead) refresh token could be spent; if the store still refuses it, stop here."""
        entries = [(h.record, h.base_version, h.slot) for h in [self._held.get(uid)] if h is not None]
        if self.journal.may_hold(uid):  # (``pending`` searches the whole journal)
            entries += [(e.record, e.base_version, e.slot) for e in self.journal.pending(uid)]
        base_now = current.version if current.source != "env" else 0
        for record, base, slot in entries:
            try:
                outcome = await self._land(record, base, slot, locked=True)
            except StorageError as exc:
                if base != base_now:
                    continue
                raise NotYetStored(f"user {uid}'s new token is held locally, not yet stored ({exc.message})",
                                   hint="it is written as soon as the store takes it", record=record) from None
            if outcome == "recovered":
                current = await self._load_fresh(uid) or current
                base_now = current.version
        return current

    async def _last_tries(self) -> None:
        """At shutdown: a held token in the journal is safe (the next start writes it back); one
        only in memory is retried for up to ``hold_timeout`` seconds before we give up, loudly
        (the users given up on are left in ``lost_at_exit``)."""
        for task in self._retrying.values():
            task.cancel()
        deadline = time.monotonic() + self.hold_timeout
        delay = 0.1
        while any(h.slot is None for h in self._held.values()):
            for uid, held in list(self._held.items()):
                if held.slot is None:
                    try:
                        await self._land(held.record, held.base_version, None)
                    except ConsoleError as exc:
                        held.reason = exc.message
            if not any(h.slot is None for h in self._held.values()) or time.monotonic() >= deadline:
                break
            log.error("not exiting yet: %d new tokens are held in memory only, not yet stored (%s); "
                      "retrying for up to %.0fs", sum(h.slot is None for h in self._held.values()),
                      ", ".join(self.held_in_memory_only()[:5]), self.hold_timeout)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        for uid, held in self._held.items():
            if held.slot is None:
                self.lost_at_exit.append(uid)
                log.error("user %s's new token could not be stored nor journalled (%s); it is lost "
                          "with this process: that user must log in again", uid, held.reason)
        self.journal.close()

    # -- login -------------------------------------------------------------------------

    async def start_login(self, user_id: str | None = None, redirect_uri: str | None = None, *,
                          long_lived: bool = False) -> LoginStart:
        """``long_lived``: a setup token as ``claude setup-token`` gets one (a year, scope
        user:inference, no refresh token, never refreshed)."""
        uid = self.user(user_id)
        verifier = oauth_mod.new_verifier()
        state = oauth_mod.new_state()
        now = self.clock.now()
        redirect = redirect_uri or self.settings.redirect_uri
        pending = PendingLogin(state=state, verifier=verifier, user_id=uid,
                               redirect_uri=redirect + (PendingLogin.LONG_LIVED_MARK if long_lived else ""),
                               created_at=now, expires_at=now + self.settings.pending_ttl)
        await self.store.sweep_pending()
        await self.store.save_pending(pending)
        asked = self.settings.replace(scopes=oauth_mod.LONG_LIVED_SCOPE) if long_lived else self.settings
        url = oauth_mod.authorize_url(asked, state=state,
                                      challenge=oauth_mod.challenge_for(verifier), redirect_uri=redirect)
        return LoginStart(uid, url, state, pending.expires_at)

    async def cancel_login(self, state: str) -> bool:
        """Remove the pending login ``state`` (the operator gave up on it); False if it was
        already gone (used, expired and swept, or cancelled)."""
        pending = await self.store.take_pending(state)
        if pending is not None:
            await self._audit("login_cancelled", pending.user_id, True, "")
        return pending is not None

    async def complete_login(self, pasted: str, user_id: str | None = None,
                             state: str | None = None) -> TokenRecord:
        if user_id is not None:
            self.user(user_id)
        code, pasted_state = oauth_mod.parse_pasted(pasted)
        state = pasted_state or state
        if state is None:
            uid = self.user(user_id)
            newest = await self.store.newest_pending(uid)
            if newest is None:
                raise LoginError(f"no login is pending for user {uid!r}, so a bare code cannot be used",
                                 hint=login_hint(uid))
            state = newest.state
        pending = await self.store.take_pending(state)
        if pending is None:
            raise LoginError("no pending login matches that state: it was already used, expired, or "
                             "was started on another store", hint=login_hint(self.user(user_id)))
        if pending.expired(self.clock.now()):
            raise LoginError(f"the login for user {pending.user_id!r} expired "
                             f"(logins must finish within {format_span(self.settings.pending_ttl)})",
                             hint=login_hint(pending.user_id))
        if user_id and user_id != pending.user_id:
            await self.store.save_pending(pending)
            raise LoginError(f"that code belongs to the login of user {pending.user_id!r}, not {user_id!r}",
                             hint=f"run: {fix_command('callback', pending.user_id, 'CODE')}")
        uid = pending.user_id
        try:
            await self._load_fresh(uid)  # a broken store fails here, before the code is spent
        except ConsoleError:
            await self.store.save_pending(pending)
            raise
        try:
            answer = await self.oauth.exchange(code, state=pending.state, verifier=pending.verifier,
                                               redirect_uri=pending.sent_redirect_uri,
                                               **({"long_lived": True} if pending.long_lived else {}))
        except InvalidGrant as exc:
            await self.store.save_pending(pending)  # the login stays open for a corrected code
            await self._audit("login", uid, False, str(exc))
            message, hint = user_line(exc, uid)
            failure = LoginError(message, hint=hint)
            failure.exit_code = exc.exit_code
            raise failure from exc
        except OAuthError as exc:
            await self.store.save_pending(pending)
            await self._audit("login", uid, False, str(exc))
            raise
        now = self.clock.now()
        async with self.store.locked(uid):
            existing = await self._load_fresh(uid)
            record = TokenRecord(
                user_id=uid, access_token=answer.access_token, refresh_token=answer.refresh_token,
                expires_at=answer.expires_at, scopes=answer.scopes,
                account_email=answer.account_email, account_uuid=answer.account_uuid,
                organization_uuid=answer.organization_uuid, organization_name=answer.organization_name,
                created_at=existing.created_at if existing and existing.source != "env" else now,
                refresh_count=existing.refresh_count if existing else 0,
                version=existing.version if existing and existing.source != "env" else 0,
            )
            # The code is spent: these tokens exist nowhere else. Journal first, as a refresh does.
            slot, journal_error = await self._journal_append(record, record.version)
            try:
                saved = await self._save_tokens(uid, record)
            except StaleWrite:
                raise
            except StorageError as exc:
                raise self._hold(record, record.version, slot, exc, journal_error, action="login") from None
            if slot is not None:
                self.journal.mark_done(slot)
        self._remember(saved)
        await self._audit("login", uid, True, f"account {saved.account_email or '?'}")
        if self.keeps_facts:  # the plan, at once: one call, its failure kept, never the login's
            await self._profile_after_login(uid)
        return saved

    # -- logout, listing, health -------------------------------------------------------

    async def logout(self, user_id: str | None = None) -> bool:
        uid = self.user(user_id)
        async with self.store.locked(uid):
            removed = await self.store.delete(uid)
        self.forget(uid)
        if removed:
            if self.keeps_facts:
                with contextlib.suppress(ConsoleError):
                    await self.store.drop_facts(uid)
            await self._audit("logout", uid, True, "")
        else:
            env_record = await self._load_tokens(uid)
            if env_record is not None and env_record.source == "env":
                raise ConsoleError(f"the token of user {uid!r} comes from CLAUDE_ACCESS_TOKEN",
                                   hint="unset CLAUDE_ACCESS_TOKEN, CLAUDE_REFRESH_TOKEN and CLAUDE_EXPIRES_AT")
        return removed

    async def list_users(self, secrets: bool = False) -> list[TokenRecord]:
        """Every user, as one read; tokens stay encrypted (``HIDDEN``) unless ``secrets``."""
        return await self.store.list(secrets)

    def iter_users(self, page_size: int = 20000, first: int | None = 1000):
        """Every user a page at a time (tokens ``HIDDEN``): an async iterator of lists, a short
        first page then long ones, so a face shows the first rows before the last arrive."""
        return self.store.list_pages(page_size, first=first)

    async def change_cursor(self):
        """Where ``changes_since`` starts: take it *before* a full listing, so nothing written
        while the listing runs is missed. ``None``: the store cannot watch (list every time)."""
        return await self.store.change_cursor()

    async def changes_since(self, cursor) -> Changes:
        """The users changed or deleted since ``cursor`` (tokens ``HIDDEN``), and the next
        cursor; ``everything``: list again. On PostgreSQL one round trip, on the file one
        ``stat``; every replica's writes are seen."""
        return await self.store.changes_since(cursor)

    async def audit_trail(self, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        return await self.store.audit_trail(user_id, limit)

    async def doctor(self, user_id: str | None = None):
        """Every check of ``claude-console doctor`` (console/doctor.py); changes nothing."""
        from .doctor import run_checks

        return await run_checks(self, user_id)

    async def health(self, *, rows: bool = False) -> list[TierHealth]:
        """Each tier's state, the key, the rescue journal; with ``rows`` (one listing: the
        ``health`` verb, not a probe polled every few seconds) also users whose tokens are
        locked under a key that is not configured."""
        out = await self.store.health()
        keyring = self.store.primary.keyring
        if keyring is not None and keyring.enabled:
            more = f" (+{len(keyring.keys) - 1} older)" if len(keyring.keys) > 1 else ""
            out.append(TierHealth("key", "up", f"key id {keyring.primary_id}{more}"))
        else:
            out.append(TierHealth("key", "not configured", "tokens at rest are not encrypted"))
        if rows:
            locked = await self.locked_users()
            if locked:
                parts = ", ".join(f"{len(users)} under key id {kid}" for kid, users in sorted(locked.items()))
                count = sum(map(len, locked.values()))
                out.append(TierHealth("tokens", "locked", f"{count_text(count, 'user')} locked "
                                      f"({parts}, not configured): add the key to CLAUDE_TOKEN_ENCRYPTION_KEY"))
        out.append(self.journal_health())
        return out

    async def locked_users(self) -> dict[str, list[str]]:
        """Key id -> the users whose tokens are under it, for keys that are not configured
        (nothing is decrypted); empty when the store cannot be listed (health says why)."""
        try:
            records = await self.list_users()
        except ConsoleError:
            return {}
        locked: dict[str, list[str]] = {}
        for record in records:
            if record.locked:
                locked.setdefault(record.locked, []).append(record.user_id)
        return locked

    def journal_health(self) -> TierHealth:
        """The rescue journal as a tier line: ``held`` while a rotated token is not yet stored."""
        held = self.held_users()
        if held:
            names = ", ".join(sorted(held)[:5]) + (", …" if len(held) > 5 else "")
            whose = "1 user's" if len(held) == 1 else f"{len(held)} users'"
            return TierHealth("journal", "held", f"{whose} new tokens are held locally, not yet "
                              f"stored ({names}); they are written when the store takes them", writable=True)
        try:
            self.journal.open()
        except ConsoleError as exc:
            return TierHealth("journal", "down", f"{exc.message}; rotated tokens would be held in memory only",
                              writable=True)
        return TierHealth("journal", "up", f"{self.journal.path} ({self.journal.slots} slots, none held)",
                          writable=True)

    def primary_up(self, health: list[TierHealth]) -> bool:
        """Whether ``health`` says the tier that holds the writes is up (the store is usable)."""
        return self.store.primary_up(health)

    # -- the shared database: migrations, key rotation, background refresh ---------------

    def _database(self, verb: str):
        tier = next((t for t in self.store.tiers if t.CAN_MIGRATE), None)
        if tier is None:
            from .errors import UsageError

            raise UsageError(f"{verb} works on the PostgreSQL store, and none is configured",
                             hint="set DATABASE_URL (or general_settings.database_url)")
        return tier

    async def migrate(self) -> list[str]:
        """Apply the shipped database migrations that are missing; return their ids."""
        return await self._database("migrate").migrate()

    async def rotate_key(self, batch: int = 500, progress=None):
        """Re-encrypt every stored row to the first configured key, online and resumable."""

        async def rotated(user_ids: list[str]) -> None:
            for uid in user_ids:  # cached ciphertext may still be under the old key
                self.forget(uid)
            await self.store.cache_drop_many(user_ids)  # a cache that is down is skipped there

        tier = self.store.primary if self.store.primary.CAN_ROTATE_KEYS else self._database("rotate-key")
        report = await tier.rotate_keys(batch=batch, progress=progress, on_batch=rotated)
        await self._audit("rotate_key", "*", report.complete,
                          f"{count_text(report.rotated, 'row')} re-encrypted to key id {report.key_id}")
        return report

    async def claim_due_refreshes(self, *, limit: int, window: float, keepalive: float, lease: float,
                                  owner: str, backoff_base: float, backoff_cap: float) -> list[tuple[str, int]]:
        """``(user, version)`` pairs due for a background refresh: expiring within ``window``,
        or not refreshed for ``keepalive`` seconds, and not backing off after a failure. The
        database claims them for ``lease`` seconds so other replicas skip them. The rule is
        ``store/refresh_rule.py``; the primary tier applies it."""
        return await self.store.claim_due(limit=limit, window=window, keepalive=keepalive, lease=lease,
                                          owner=owner, backoff_base=backoff_base, backoff_cap=backoff_cap)

    async def refresh_claimed(self, user_id: str, version: int) -> TokenRecord:
        """Refresh a user claimed at ``version``, unless the stored tokens changed since (another
        replica refreshed, or the user logged in again): then the current record comes back,
        unrefreshed. The version check happens after taking the lock, with no read before."""
        running = self._inflight.get(user_id)
        if running is not None:
            return await asyncio.shield(running)
        seen = TokenRecord(user_id=user_id, access_token="", version=version) if version else \
            await self._load_fresh(user_id)  # an unversioned entry (the seed's file): compare tokens
        if seen is None:
            raise NotLoggedIn(f"user {user_id!r} is not logged in", hint=login_hint(user_id))
        return await self._refresh_single_flight(user_id, seen, force=True)

    def status_report(self, record: TokenRecord | None, user_id: str) -> dict[str, Any]:
        """The seed's status fields plus ours; never a token."""
        if record is None:
            return {"user_id": user_id, "authenticated": False, "usable": False, "status": "not_logged_in",
                    "expires_in": 0, "needs_refresh": False, "source": None, "account_email": None}
        now = self.clock.now()
        status = self.status_of(record, now)
        return {
            "user_id": record.user_id,
            "authenticated": status in (Status.ACTIVE, Status.EXPIRING),
            "status": status.value,
            "usable": status.usable,
            "expires_in": int(record.expires_at - now),
            "expires_at": record.expires_at,
            "needs_refresh": status in (Status.EXPIRING, Status.EXPIRED_REFRESHABLE),
            "source": record.source,
            "account_email": record.account_email,
            "organization": record.organization_name,
            "scopes": record.scopes,
            "last_used": record.last_used,
            "refresh_count": record.refresh_count,
            "last_refresh_error": record.last_refresh_error,
            "long_lived": record.long_lived,
            "held_locally": record.user_id in self.held_users(),
            "locked_key": record.locked,
        }

    # -- using the token ---------------------------------------------------------------

    async def call_api(self, method: str, path: str, user_id: str | None = None, **kwargs):
        """Call the Claude API; a 401 before expiry triggers one reactive refresh."""
        uid = self.user(user_id)
        token = await self.get_access_token(uid)
        response = await self.oauth.api(method, path, token, **kwargs)
        if response.status_code != 401:
            return await self._api_answer(uid, response)
        refused = oauth_mod.refusal_error(oauth_mod.answer_of(response, "api"), what="API call", user=uid)
        if refused.kind == "beta_missing":  # a refresh would not help: the call lacked the beta header
            raise refused
        self.forget(uid)
        record = await self._load_tokens(uid)
        if record is None:
            raise NotLoggedIn(f"user {uid!r} is not logged in", hint=login_hint(uid))
        if record.access_token == token:
            record = await self._refresh_single_flight(uid, record, force=True)
        response = await self.oauth.api(method, path, record.access_token, **kwargs)
        if response.status_code == 401:
            refused = oauth_mod.refusal_error(oauth_mod.answer_of(response, "api"), what="API call", user=uid)
            if refused.kind is None:
                raise OAuthError(f"the API rejected the token of user {uid!r} even after a refresh (HTTP 401)",
                                 hint=login_hint(uid), status=401)
            raise refused
        return await self._api_answer(uid, response)

    async def _api_answer(self, uid: str, response):
        """An API answer, unless it is a refusal the table names for the account: a disabled or
        OAuth-refusing organization marks the record; Claude-Code-only and a missing beta raise."""
        if response.status_code < 400 or response.status_code == 429 or response.status_code >= 500:
            return response
        refused = oauth_mod.refusal_error(oauth_mod.answer_of(response, "api"), what="API call", user=uid)
        if isinstance(refused, AccountBlocked):
            async with self.store.locked(uid):
                current = await self._load_fresh(uid)
                if current is not None:
                    raise await self._refresh_blocked(uid, current, refused)
            raise refused
        if refused.kind in ("claude_code_only", "beta_missing"):
            raise refused
        return response

    async def profile(self, user_id: str | None = None) -> dict[str, Any]:
        record = await self.cached_record(user_id)
        if record is not None and record.long_lived:
            uid = self.user(user_id)
            raise ConsoleError(f"user {uid!r} holds a long-lived token (scope user:inference only), so "
                               "profile and usage calls are skipped: they need user:profile",
                               hint=f"for the account details run: claude-console login --user {uid}")
        response = await self.call_api("GET", "/api/oauth/profile", user_id)
        if response.status_code >= 400:
            raise OAuthError(f"the profile endpoint answered HTTP {response.status_code}",
                             status=response.status_code)
        return response.json()

    # -- what Claude says about the account: usage and plan (console/usage_poll.py) -----

    async def usage(self, user_id: str | None = None, *, fresh: bool = False):
        """The stored usage and profile facts of one user (``AccountFacts``). ``fresh`` (or none
        stored yet) asks Claude now, still under the shared lease: two callers make one request."""
        from . import usage_poll

        uid = self.user(user_id)
        facts = await usage_poll.load_facts(self, uid)
        if fresh or (facts.usage_fetched_at is None and facts.usage_error is None):
            facts = await usage_poll.fetch_usage(self, uid)
            if facts.profile_fetched_at is None and facts.profile_error is None:
                facts = await usage_poll.fetch_profile(self, uid)
        return facts

    async def usage_of(self, user_ids: list[str] | None = None):
        """Stored facts of many users (None: everyone): ``{user: AccountFacts}``, no request."""
        from . import usage_poll

        return await usage_poll.load_many(self, user_ids)

    async def usage_cells(self, user_ids: list[str] | None = None):
        """What the board shows of each user's facts (None: everyone): ``{user: UsageCells}``,
        one cheap read however many users there are."""
        from . import usage_poll

        return await usage_poll.load_cells(self, user_ids)

    async def usage_cells_changed(self, since: float | None = None):
        """``(mark, {user: UsageCells})`` of the users whose facts changed at or after ``since``
        (a mark returned before, on the store's clock; None: everyone). A board re-reads only
        these; mark None: the store cannot say, and the cells are everyone's."""
        from . import usage_poll

        return await usage_poll.load_cells_changed(self, since)

    def stale_usage(self, user_ids: list[str], facts: dict[str, Any]) -> list[str]:
        """Of ``user_ids``, those whose stored usage (``facts``, as ``usage_of`` returns it) is
        older than ``usage_interval``: neither answered nor refused within it, and not waiting
        out a ``retry-after``. A face that shows usage asks for these (under the lease)."""
        now, interval = self.clock.now(), self.settings.usage_interval
        out = []
        for uid in user_ids:
            f = facts.get(uid)
            if f is None or (max(f.usage_fetched_at or 0.0, f.usage_error_at or 0.0) + interval <= now
                             and (f.next_usage_at or 0.0) <= now):
                out.append(uid)
        return out

    async def with_usage(self, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``status_report`` dicts plus ``plan`` and ``usage`` (the model ``usage --json`` prints),
        read from the store; a store without facts, or one that fails, leaves them null."""
        from .usage import empty_public

        try:
            facts = await self.usage_of([r["user_id"] for r in reports])
        except ConsoleError as exc:
            log.info("usage facts not read: %s", exc)
            facts = {}
        for report in reports:
            found = facts.get(report["user_id"])
            report["plan"] = found.plan if found is not None else None
            report["usage"] = found.public() if found is not None else empty_public(report["user_id"])
        return reports

    async def fetch_profile(self, user_id: str | None = None, *, force: bool = False):
        """The profile (plan, organisation), at most daily unless ``force``."""
        from . import usage_poll

        return await usage_poll.fetch_profile(self, self.user(user_id), force=force)

    async def poll_usage(self, *, concurrency: int = 32, limit: int | None = None) -> int:
        """One pass over the users whose usage lease has lapsed (the refresher's)."""
        from . import usage_poll

        return await usage_poll.poll_due(self, concurrency=concurrency, limit=limit)

    @property
    def keeps_facts(self) -> bool:
        """Whether the store keeps usage facts (a hierarchy whose primary can; SDK stores may not)."""
        return bool(getattr(self.store, "keeps_facts", False))

    async def _profile_after_login(self, uid: str) -> None:
        try:
            await self.fetch_profile(uid, force=True)
        except Exception as exc:  # noqa: BLE001 - a profile failure never fails a login
            log.info("profile of %s after login not fetched: %s", uid, exc)

    def add_listener(self, listener) -> None:
        """Call ``listener(event, seconds)`` after every audited action (metrics hook onto this);
        ``seconds`` is the provider round trip of a successful refresh, else ``None``."""
        self._listeners.append(listener)

    async def _audit(self, action: str, uid: str, ok: bool, detail: str,
                     seconds: float | None = None) -> None:
        event = AuditEvent(action=action, user_id=uid, ok=ok, detail=detail, actor=self.actor)
        await self.store.append_audit(event)
        for listener in self._listeners:
            try:
                listener(event, seconds)
            except Exception:  # a broken observer must not fail a token operation
                log.exception("audit listener failed")
