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
import getpass
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from . import oauth as oauth_mod
from .config import Settings, load_settings
from .errors import (ConsoleError, InvalidGrant, LoginError, NeedsLogin, NotLoggedIn, OAuthError,
                     StaleWrite, TransientOAuthError)
from .store import AuditEvent, Hierarchy, PendingLogin, TierHealth, build_store
from .tokens import Status, TokenRecord, token_status

log = logging.getLogger("console.service")

TOUCH_INTERVAL = 60.0


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


def login_hint(user_id: str) -> str:
    return f"run: claude-console login --user {user_id}"


class AuthService:
    """Get a valid token, refresh (single flight), log in, log out, report status."""

    def __init__(self, settings: Settings | None = None, store: Hierarchy | None = None,
                 oauth: "oauth_mod.OAuthClient | None" = None, *, face: str = "sdk") -> None:
        self.settings = settings or load_settings()
        self.store = store if store is not None else build_store(self.settings)
        self._oauth = oauth
        self.actor = _default_actor(face)
        self._mem: dict[str, tuple[TokenRecord, float, float]] = {}
        self._inflight: dict[str, asyncio.Task] = {}
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task] = set()  # bookkeeping kept off the callers' path
        self._listeners: list = []  # callables (event, seconds) told of every audited action
        # A write on another replica evicts our memory entry (via the cache's invalidations).
        on_invalidate = getattr(self.store, "on_invalidate", None)
        if on_invalidate is not None:
            on_invalidate(self.forget)

    @property
    def oauth(self) -> "oauth_mod.OAuthClient":
        if self._oauth is None:
            self._oauth = oauth_mod.OAuthClient(self.settings)
        return self._oauth

    def user(self, user_id: str | None) -> str:
        return user_id or self.settings.default_user

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

    # -- memory cache ------------------------------------------------------------------

    def _remember(self, record: TokenRecord) -> None:
        fresh_until = time.monotonic() + self.settings.memory_cache_ttl
        self._mem[record.user_id] = (record, fresh_until, record.expires_at - self.settings.refresh_buffer)

    def _memory_hit(self, uid: str) -> TokenRecord | None:
        """The remembered record while it is fresh and not yet due for refresh."""
        hit = self._mem.get(uid)
        if hit is not None and hit[1] > time.monotonic() and hit[2] > time.time():
            return hit[0]
        return None

    def forget(self, user_id: str | None = None) -> None:
        if user_id is None:
            self._mem.clear()
        else:
            self._mem.pop(user_id, None)

    # -- reading -----------------------------------------------------------------------

    async def get_record(self, user_id: str | None = None) -> TokenRecord | None:
        return await self._load_tokens(self.user(user_id))

    async def cached_record(self, user_id: str | None = None) -> TokenRecord | None:
        """Like ``get_record``, but served from the memory cache while it is fresh
        (``memory_cache_ttl``): for status reads that come often, such as the API's."""
        uid = self.user(user_id)
        hit = self._memory_hit(uid)
        if hit is not None:
            return hit
        record = await self._load_tokens(uid)
        if record is not None and self.status_of(record) is Status.ACTIVE:
            self._remember(record)
        return record

    def status_of(self, record: TokenRecord, now: float | None = None) -> Status:
        return token_status(record, now, self.settings.refresh_buffer)

    async def get_access_token(self, user_id: str | None = None, auto_refresh: bool | None = None) -> str:
        """A valid access token, refreshing when needed. Raises a ``ConsoleError`` if none."""
        uid = user_id or self.settings.default_user
        hit = self._memory_hit(uid)
        if hit is not None:
            return hit.access_token
        record = await self._valid_record(uid, self.settings.auto_refresh if auto_refresh is None else auto_refresh)
        return record.access_token

    async def _valid_record(self, uid: str, auto_refresh: bool) -> TokenRecord:
        running = self._inflight.get(uid)
        if running is not None and auto_refresh:  # a refresh is under way: share it
            return await asyncio.shield(running)
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
        if status is Status.EXPIRED:
            raise NeedsLogin(f"the token of user {uid!r} has expired and there is no refresh token",
                             hint=login_hint(uid))
        if not auto_refresh:
            if status is Status.EXPIRING:
                return record
            raise NeedsLogin(f"the token of user {uid!r} has expired and auto_refresh is off",
                             hint=f"run: claude-console refresh --user {uid}")
        try:
            fresh = await self._refresh_single_flight(uid, record, force=False)
        except (TransientOAuthError, StaleWrite):
            if status is Status.EXPIRING:  # still valid for a while: serve it, retry next time
                return record
            raise
        await self._touch(uid)
        return fresh

    async def _touch(self, uid: str) -> None:
        now = time.time()
        if now - self._touched.get(uid, 0.0) >= TOUCH_INTERVAL:
            self._touched[uid] = now
            self._later(self._record_use(uid, now))

    async def _record_use(self, uid: str, when: float) -> None:
        try:
            await self.store.touch(uid, when)
        except ConsoleError as exc:
            log.debug("last_used for %s not recorded: %s", uid, exc)

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
        record = await self._load_fresh(uid)  # not the cache: a forced refresh must see the newest
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
            now = time.time()
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
                raise NeedsLogin(f"user {uid!r} has no refresh token", hint=login_hint(uid))
            asked = time.monotonic()
            try:
                answer = await self.oauth.refresh(current.refresh_token)
            except InvalidGrant as exc:
                return await self._refresh_rejected(uid, current, exc)
            except OAuthError as exc:
                await self._refresh_failed(uid, current, exc)
                raise
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
            # The old refresh token is dead now: store the new one before anything else.
            saved = await self._save_tokens(uid, fresh, expected_version=current.version)
        self._remember(saved)
        self._later(self._audit("refresh", uid, True, f"expires in {int(saved.expires_at - time.time())}s",
                                seconds=time.monotonic() - asked))
        return saved

    async def _refresh_rejected(self, uid: str, current: TokenRecord, exc: InvalidGrant) -> TokenRecord:
        # Another process that ignores our lock may have spent the token: re-read first.
        again = await self._load_fresh(uid)
        if again is not None and again.version != current.version and \
                self.status_of(again) in (Status.ACTIVE, Status.EXPIRING):
            self._remember(again)
            return again
        self.forget(uid)
        if current.source != "env":
            marked = current.evolve(needs_login=True, last_refresh_error=str(exc),
                                    last_refresh_error_at=time.time(),
                                    refresh_failures=current.refresh_failures + 1)
            try:
                await self._save_tokens(uid, marked, expected_version=current.version)
            except StaleWrite:
                pass
        await self._audit("refresh_failed", uid, False, str(exc))
        raise NeedsLogin(f"user {uid!r} must log in again: the provider rejected the refresh token "
                         "(invalid_grant)", hint=login_hint(uid)) from exc

    async def _refresh_failed(self, uid: str, current: TokenRecord, exc: OAuthError) -> None:
        """Record the failure; the tokens themselves stay exactly as they were."""
        if current.source != "env":
            noted = current.evolve(last_refresh_error=str(exc), last_refresh_error_at=time.time(),
                                   refresh_failures=current.refresh_failures + 1)
            try:
                await self._save_tokens(uid, noted, expected_version=current.version)
            except (StaleWrite, ConsoleError) as write_exc:
                log.debug("failure note for %s not stored: %s", uid, write_exc)
        await self._audit("refresh_failed", uid, False, str(exc))

    # -- login -------------------------------------------------------------------------

    async def start_login(self, user_id: str | None = None, redirect_uri: str | None = None) -> LoginStart:
        uid = self.user(user_id)
        verifier = oauth_mod.new_verifier()
        state = oauth_mod.new_state()
        now = time.time()
        redirect = redirect_uri or self.settings.redirect_uri
        pending = PendingLogin(state=state, verifier=verifier, user_id=uid, redirect_uri=redirect,
                               created_at=now, expires_at=now + self.settings.pending_ttl)
        await self.store.sweep_pending()
        await self.store.save_pending(pending)
        url = oauth_mod.authorize_url(self.settings, state=state,
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
        if pending.expired():
            raise LoginError(f"the login for user {pending.user_id!r} expired "
                             f"(logins must finish within {int(self.settings.pending_ttl // 60)} minutes)",
                             hint=login_hint(pending.user_id))
        if user_id and user_id != pending.user_id:
            await self.store.save_pending(pending)
            raise LoginError(f"that code belongs to the login of user {pending.user_id!r}, not {user_id!r}",
                             hint=f"run: claude-console callback CODE --user {pending.user_id}")
        uid = pending.user_id
        try:
            await self._load_fresh(uid)  # a broken store fails here, before the code is spent
        except ConsoleError:
            await self.store.save_pending(pending)
            raise
        try:
            answer = await self.oauth.exchange(code, state=pending.state, verifier=pending.verifier,
                                               redirect_uri=pending.redirect_uri)
        except InvalidGrant as exc:
            await self.store.save_pending(pending)  # the login stays open for a corrected code
            await self._audit("login", uid, False, str(exc))
            raise LoginError("the code was rejected (invalid_grant): it is wrong, expired or already used",
                             hint="open the login URL again and paste the new code, or "
                                  + login_hint(uid)) from exc
        except OAuthError as exc:
            await self.store.save_pending(pending)
            await self._audit("login", uid, False, str(exc))
            raise
        now = time.time()
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
            saved = await self._save_tokens(uid, record)
        self._remember(saved)
        await self._audit("login", uid, True, f"account {saved.account_email or '?'}")
        return saved

    # -- logout, listing, health -------------------------------------------------------

    async def logout(self, user_id: str | None = None) -> bool:
        uid = self.user(user_id)
        async with self.store.locked(uid):
            removed = await self.store.delete(uid)
        self.forget(uid)
        if removed:
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

    async def audit_trail(self, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        return await self.store.audit_trail(user_id, limit)

    async def health(self) -> list[TierHealth]:
        out = await self.store.health()
        keyring = getattr(self.store.primary, "keyring", None)
        if keyring is not None and keyring.enabled:
            more = f" (+{len(keyring.keys) - 1} older)" if len(keyring.keys) > 1 else ""
            out.append(TierHealth("key", "up", f"key id {keyring.primary_id}{more}"))
        else:
            out.append(TierHealth("key", "not configured", "tokens at rest are not encrypted"))
        return out

    # -- the shared database: migrations, key rotation, background refresh ---------------

    def _database(self, verb: str):
        tier = self.store.tier("postgres")
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

        file_tier = self.store.primary if self.store.primary.name == "file" else None
        if file_tier is not None:  # the file store: one atomic rewrite
            report = await file_tier.rotate_keys()
            await rotated([r.user_id for r in await file_tier.list()])
        else:
            from .store.pgadmin import rotate_keys

            report = await rotate_keys(self._database("rotate-key"), batch=batch, progress=progress,
                                       on_batch=rotated)
        await self._audit("rotate_key", "*", report.complete,
                          f"{report.rotated} rows re-encrypted to key id {report.key_id}")
        return report

    async def claim_due_refreshes(self, *, limit: int, window: float, keepalive: float, lease: float,
                                  owner: str, backoff_base: float, backoff_cap: float) -> list[tuple[str, int]]:
        """``(user, version)`` pairs due for a background refresh: expiring within ``window``,
        or not refreshed for ``keepalive`` seconds, and not backing off after a failure. The
        database claims them for ``lease`` seconds so other replicas skip them; other stores
        are judged from a listing that decrypts nothing."""
        claim = getattr(self.store.primary, "claim_due", None)
        if claim is not None:
            return await claim(limit=limit, window=window, keepalive=keepalive, lease=lease, owner=owner,
                               backoff_base=backoff_base, backoff_cap=backoff_cap)
        now, due = time.time(), []
        for r in await self.store.list():
            if r.source == "env" or r.needs_login or not r.refresh_token:
                continue
            if r.refresh_failures and r.last_refresh_error_at and now < r.last_refresh_error_at + min(
                    backoff_cap, backoff_base * 2 ** min(r.refresh_failures - 1, 30)):
                continue
            if r.expires_at <= now + window or (r.last_refresh_at or r.created_at) <= now - keepalive:
                due.append((r.expires_at, r.user_id, r.version))
        return [(uid, version) for _, uid, version in sorted(due)[:limit]]

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

    # -- backup, restore, import, export (the work is in console/backup.py) -------------

    async def backup(self, path, passphrase: str | None, *, users: list[str] | None = None,
                     fmt: str = "portable", force: bool = False, kdf: dict | None = None, progress=None):
        """Every user's tokens (or ``users``) to one passphrase-encrypted file, 0600, atomically;
        ``fmt="sql"``: the PostgreSQL table as a ``psql -f`` script, tokens under the store's key."""
        from . import backup as backup_mod

        return await backup_mod.backup(self, path, passphrase, users=users, fmt=fmt, force=force, kdf=kdf,
                                       progress=progress)

    async def open_backup(self, path, passphrase: str, *, allow_weak_kdf: bool = False, progress=None):
        """Read and decrypt a backup (nothing is written); ``allow_weak_kdf`` is for tests only."""
        from . import backup as backup_mod

        return await backup_mod.open_backup(path, passphrase, allow_weak_kdf=allow_weak_kdf, progress=progress)

    async def plan_restore(self, contents, *, users: list[str] | None = None, overwrite: str = "newer"):
        """What restoring ``contents`` would change, user by user (nothing is written)."""
        from . import backup as backup_mod

        return await backup_mod.plan_restore(self, contents, users=users, overwrite=overwrite)

    async def apply_restore(self, plan, *, batch_size: int | None = None, progress=None):
        """Write a restore plan in batches; a user changed since the plan was made is kept."""
        from . import backup as backup_mod

        return await backup_mod.apply_restore(self, plan, batch_size=batch_size, progress=progress)

    async def import_tokens(self, source: str, path: str | None = None, user_id: str | None = None, *,
                            force: bool = False):
        """Store tokens from Claude Code (``claude-code``), the environment (``env``) or a seed
        token file (``file``) for one user."""
        from . import backup as backup_mod

        return await backup_mod.import_tokens(self, source, path, user_id, force=force)

    async def export_tokens(self, path, user_id: str | None = None, *, force: bool = False) -> TokenRecord:
        """One user's tokens in the seed's single-user file format, 0600, atomically."""
        from . import backup as backup_mod

        return await backup_mod.export_tokens(self, path, user_id, force=force)

    def status_report(self, record: TokenRecord | None, user_id: str) -> dict[str, Any]:
        """The seed's status fields plus ours; never a token."""
        if record is None:
            return {"user_id": user_id, "authenticated": False, "usable": False, "status": "not_logged_in",
                    "expires_in": 0, "needs_refresh": False, "source": None, "account_email": None}
        now = time.time()
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
        }

    # -- using the token ---------------------------------------------------------------

    async def call_api(self, method: str, path: str, user_id: str | None = None, **kwargs):
        """Call the Claude API; a 401 before expiry triggers one reactive refresh."""
        uid = self.user(user_id)
        token = await self.get_access_token(uid)
        response = await self.oauth.api(method, path, token, **kwargs)
        if response.status_code != 401:
            return response
        self.forget(uid)
        record = await self._load_tokens(uid)
        if record is None:
            raise NotLoggedIn(f"user {uid!r} is not logged in", hint=login_hint(uid))
        if record.access_token == token:
            record = await self._refresh_single_flight(uid, record, force=True)
        response = await self.oauth.api(method, path, record.access_token, **kwargs)
        if response.status_code == 401:
            raise OAuthError(f"the API rejected the token of user {uid!r} even after a refresh (HTTP 401)",
                             hint=login_hint(uid), status=401)
        return response

    async def profile(self, user_id: str | None = None) -> dict[str, Any]:
        response = await self.call_api("GET", "/api/oauth/profile", user_id)
        if response.status_code >= 400:
            raise OAuthError(f"the profile endpoint answered HTTP {response.status_code}",
                             status=response.status_code)
        return response.json()

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
