"""Asking Claude for an account's usage and profile, politely, and keeping the answers.

Politeness is the store's lease (``Tier.claim_fetch``): at most one usage request per user per
``claude_oauth.usage_interval`` across every process and replica; a 429 moves that user's next
allowed time to its ``retry-after``. The profile is asked at most once a day (and after every
login, and on ``refresh --user U``).

What an answer may change: only the facts (``console/usage.py``). No usage or profile error
ever writes a token or a token status, except Claude's two organisation refusals
(``account_disabled``, ``oauth_not_allowed``), which the service marks as for any API call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from . import oauth as oauth_mod
from .errors import AccountBlocked, ConsoleError, NotLoggedIn
from .tokens import Status, TokenRecord
from .usage import PROFILE_INTERVAL, AccountFacts, BadAnswer, parse_profile, parse_usage

if TYPE_CHECKING:
    from .service import AuthService

log = logging.getLogger("console.usage")

USAGE_PATH = "/api/oauth/usage"
PROFILE_PATH = "/api/oauth/profile"
PROFILE_SCOPE = "user:profile"


def owner_of(service: "AuthService") -> str:
    """Who fetched: the face and the process, shown beside every stored answer."""
    return f"{service.actor} pid {os.getpid()} on {socket.gethostname()}"


def skip_reason(record: TokenRecord, status: Status) -> str | None:
    """Why no request is made for this user (None: ask)."""
    if PROFILE_SCOPE not in (record.scopes or []):
        kind = "a long-lived token" if record.long_lived else "a token"
        return f"skipped: {kind} without {PROFILE_SCOPE} (usage and profile need that scope)"
    if status.blocked:
        return f"skipped: the account is {status.value}"
    if status in (Status.NEEDS_LOGIN, Status.EXPIRED):
        return f"skipped: the token is {status.value}; log in again"
    return None


async def _token_for(service: "AuthService", record: TokenRecord, status: Status) -> str:
    """The access token to ask with: the stored one while it is still valid, even inside the
    refresh buffer (no write, not even last-used; a usage call never causes a refresh early);
    once expired, through the service, which refreshes as it would for any caller."""
    if status in (Status.ACTIVE, Status.EXPIRING):
        return record.access_token
    return await service.get_access_token(record.user_id)


async def _get(service: "AuthService", path: str, token: str):
    import httpx

    try:
        return await service.oauth.api("GET", path, token), None
    except httpx.HTTPError as exc:
        return None, f"cannot reach {service.settings.api_base_url} ({type(exc).__name__})"


async def _refusal(service: "AuthService", uid: str, response, what: str) -> str:
    """The one line for a refused call; the two organisation refusals mark the token record
    (the service's refusal path, console/refusals.py), nothing else touches it."""
    try:
        await service._api_answer(uid, response)
    except AccountBlocked as exc:
        return exc.message
    except ConsoleError as exc:
        return exc.message
    refused = oauth_mod.refusal_error(oauth_mod.answer_of(response, "api"), what=what, user=uid)
    if response.status_code == 403 and "scope" in (refused.description or "").lower():
        return f"skipped: the token lacks {PROFILE_SCOPE} ({refused.description})"
    return refused.message


async def fetch_usage(service: "AuthService", user_id: str, *, claimed: bool = False,
                      owner: str | None = None) -> AccountFacts:
    """Ask for one user's usage if the lease allows (``claimed``: the caller holds it already);
    return the stored facts either way."""
    uid = service.user(user_id)
    store = service.store
    owner = owner or owner_of(service)
    record = await service.cached_record(uid)
    if record is None:
        raise NotLoggedIn(f"user {uid!r} is not logged in", hint=f"run: claude-console login --user {uid}")
    status = service.status_of(record)
    why = skip_reason(record, status)
    if why is not None:
        return await _note(service, uid, {"usage_error": why})
    if not claimed and not await store.claim_fetch(uid, interval=service.settings.usage_interval, owner=owner):
        return await load_facts(service, uid)
    now = service.clock.now()
    try:
        token = await _token_for(service, record, status)
    except ConsoleError as exc:
        return await _note(service, uid, {"usage_error": f"no valid token: {exc.message}", "usage_error_at": now})
    response, failed = await _get(service, USAGE_PATH, token)
    if response is None:
        return await _note(service, uid, {"usage_error": failed, "usage_error_at": now})
    if response.status_code == 429:
        wait = oauth_mod._retry_after(response)
        wait = max(wait if wait is not None else 0.0, service.settings.usage_interval)
        await store.defer_fetch(uid, now + wait)
        return await _note(service, uid, {"usage_error": f"rate limited by Claude (HTTP 429); next request "
                                                         f"in {int(wait)}s", "usage_error_at": now})
    if response.status_code >= 400:
        line = await _refusal(service, uid, response, "usage call")
        return await _note(service, uid, {"usage_error": line, "usage_error_at": now})
    try:
        usage = parse_usage(response.json())
    except (ValueError, BadAnswer) as exc:
        return await _note(service, uid, {"usage_error": f"unreadable usage answer: {exc}", "usage_error_at": now})
    return await _note(service, uid, {"usage": usage.to_dict(), "usage_fetched_at": now,
                                      "usage_fetched_by": owner, "usage_error": None, "usage_error_at": None},
                       check=False)


async def fetch_profile(service: "AuthService", user_id: str, *, force: bool = False,
                        owner: str | None = None) -> AccountFacts:
    """Ask for one user's profile when it is a day old (or ``force``: after a login, or
    ``refresh --user``); failures are kept as "profile unknown (reason)"."""
    uid = service.user(user_id)
    owner = owner or owner_of(service)
    facts = await load_facts(service, uid)
    now = service.clock.now()
    if not force and facts.profile_fetched_at and now - facts.profile_fetched_at < PROFILE_INTERVAL:
        return facts
    record = await service.cached_record(uid)
    if record is None:
        raise NotLoggedIn(f"user {uid!r} is not logged in", hint=f"run: claude-console login --user {uid}")
    status = service.status_of(record)
    why = skip_reason(record, status)
    if why is not None:
        return await _note(service, uid, {"profile_error": f"profile unknown ({why})"})
    try:
        token = await _token_for(service, record, status)
    except ConsoleError as exc:
        return await _note(service, uid, {"profile_error": f"profile unknown (no valid token: {exc.message})"})
    response, failed = await _get(service, PROFILE_PATH, token)
    if response is None:
        return await _note(service, uid, {"profile_error": f"profile unknown ({failed})"})
    if response.status_code >= 400:
        line = await _refusal(service, uid, response, "profile call")
        return await _note(service, uid, {"profile_error": f"profile unknown ({line})"})
    try:
        profile = parse_profile(response.json())
    except (ValueError, BadAnswer) as exc:
        return await _note(service, uid, {"profile_error": f"profile unknown ({exc})"})
    return await _note(service, uid, {"profile": profile.to_dict(), "profile_fetched_at": now,
                                      "profile_fetched_by": owner, "profile_error": None}, check=False)


async def _note(service: "AuthService", uid: str, changes: dict[str, Any], *,
                check: bool = True) -> AccountFacts:
    """Merge ``changes`` into the stored facts (with ``check``: skipped when they already say so,
    so a skipped user costs a read, not a write)."""
    store = service.store
    if not service.keeps_facts:
        return AccountFacts.from_dict({"user_id": uid, **changes})
    if check:
        current = await load_facts(service, uid)
        if all(getattr(current, k, None) == v for k, v in changes.items()):
            return current
    return AccountFacts.from_dict(await store.update_facts(uid, changes))


async def load_facts(service: "AuthService", user_id: str) -> AccountFacts:
    found = await load_many(service, [user_id])
    return found.get(user_id) or AccountFacts(user_id)


async def load_many(service: "AuthService", user_ids: list[str] | None = None) -> dict[str, AccountFacts]:
    """Stored facts (None: everyone); the store's cache answers first."""
    if not service.keeps_facts:
        return {}
    raw = await service.store.load_facts(user_ids)
    return {uid: AccountFacts.from_dict(data) for uid, data in raw.items()}


async def poll_due(service: "AuthService", *, concurrency: int = 32, owner: str | None = None,
                   limit: int | None = None) -> int:
    """Ask for the usage of every user whose lease has lapsed, ``concurrency`` at a time
    (the refresher's pass); returns how many were asked. Replicas split the users."""
    if not service.keeps_facts:
        return 0
    owner = owner or owner_of(service)
    interval = service.settings.usage_interval
    slots = asyncio.Semaphore(max(1, int(concurrency)))
    asked = 0
    running: set[asyncio.Task] = set()

    async def one(uid: str) -> None:
        try:
            await fetch_usage(service, uid, claimed=True, owner=owner)
        except ConsoleError as exc:
            log.info("usage of %s not fetched: %s", uid, exc.message)
        except Exception:  # noqa: BLE001 - one user's failure must not stop the pass
            log.exception("usage of %s failed unexpectedly", uid)
        finally:
            slots.release()

    try:
        while limit is None or asked < limit:
            batch = max(1, int(concurrency)) * 4
            if limit is not None:
                batch = min(batch, limit - asked)
            claimed = await service.store.claim_due_usage(limit=batch, interval=interval, owner=owner)
            if not claimed:
                break
            for uid in claimed:
                asked += 1
                await slots.acquire()
                task = asyncio.create_task(one(uid))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return asked
