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
from .usage import (PROFILE_INTERVAL, AccountFacts, BadAnswer, UsageCells, cells_of_briefs, parse_profile, parse_usage,
                    usage_cells)
from .users import fix_command

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


async def _stored(service: "AuthService", uid: str) -> tuple[TokenRecord, Status]:
    """The user's record and its status, or ``NotLoggedIn`` with the fix."""
    record = await service.cached_record(uid)
    if record is None:
        raise NotLoggedIn(f"user {uid!r} is not logged in", hint=f"run: {fix_command('login', uid)}")
    return record, service.status_of(record)


async def fetch_usage(service: "AuthService", user_id: str, *, claimed: bool = False,
                      owner: str | None = None) -> AccountFacts:
    """Ask for one user's usage if the lease allows (``claimed``: the caller holds it already);
    return the stored facts either way."""
    uid = service.user(user_id)
    owner = owner or owner_of(service)
    record, status = await _stored(service, uid)
    why = skip_reason(record, status)
    if why is not None:
        return await _note(service, uid, {"usage_error": why})
    if not claimed and not await service.store.claim_fetch(uid, interval=service.settings.usage_interval,
                                                           owner=owner):
        return await load_facts(service, uid)
    changes = await ask_usage(service, record, status, owner)
    return await _note(service, uid, changes, check="usage" not in changes)


async def ask_usage(service: "AuthService", record: TokenRecord, status: Status, owner: str) -> dict[str, Any]:
    """One usage request for a user whose lease the caller holds: the facts to store (a 429 also
    defers the user's next request to its retry-after). Writes nothing else."""
    uid = record.user_id
    now = service.clock.now()
    try:
        token = await _token_for(service, record, status)
    except ConsoleError as exc:
        return {"usage_error": f"no valid token: {exc.message}", "usage_error_at": now}
    response, failed = await _get(service, USAGE_PATH, token)
    if response is None:
        return {"usage_error": failed, "usage_error_at": now}
    if response.status_code == 429:
        wait = oauth_mod._retry_after(response)
        wait = max(wait if wait is not None else 0.0, service.settings.usage_interval)
        await service.store.defer_fetch(uid, now + wait)
        return {"usage_error": f"rate limited by Claude (HTTP 429); next request in {int(wait)}s",
                "usage_error_at": now}
    if response.status_code >= 400:
        return {"usage_error": await _refusal(service, uid, response, "usage call"), "usage_error_at": now}
    try:
        usage = parse_usage(response.json())
    except (ValueError, BadAnswer) as exc:
        return {"usage_error": f"unreadable usage answer: {exc}", "usage_error_at": now}
    return {"usage": usage.to_dict(), "usage_fetched_at": now, "usage_fetched_by": owner,
            "usage_error": None, "usage_error_at": None}


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
    record, status = await _stored(service, uid)
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


async def load_cells(service: "AuthService", user_ids: list[str] | None = None) -> dict[str, UsageCells]:
    """Plan and window percentages (None: everyone): the store's brief read where it has one,
    else the stored facts turned into cells."""
    if not service.keeps_facts:
        return {}
    brief = await service.store.load_brief_facts(user_ids)
    if brief is not None:
        return cells_of_briefs(brief)
    return {uid: usage_cells(facts) for uid, facts in (await load_many(service, user_ids)).items()}


async def load_cells_changed(service: "AuthService", since: float | None
                             ) -> tuple[float | None, dict[str, UsageCells]]:
    """``(mark, cells)`` of the users whose facts changed at or after ``since`` (a mark this
    returned before; None: everyone). The mark is None when the store cannot say what changed:
    the cells are then everyone's."""
    if not service.keeps_facts:
        return None, {}
    changed = await service.store.brief_facts_changed(since)
    if changed is None:
        return None, await load_cells(service)
    mark, brief = changed
    return mark, cells_of_briefs(brief)


async def poll_due(service: "AuthService", *, concurrency: int = 32, owner: str | None = None,
                   limit: int | None = None) -> int:
    """Ask for the usage of every user whose lease has lapsed, ``concurrency`` at a time
    (the refresher's pass); returns how many were asked. Replicas split the users. Per batch of
    claims: one read of their tokens and one write of their answers."""
    if not service.keeps_facts:
        return 0
    owner = owner or owner_of(service)
    store = service.store
    width = max(1, int(concurrency))
    slots = asyncio.Semaphore(width)
    asked = 0

    async def one(record: TokenRecord, out: list) -> None:
        async with slots:
            status = service.status_of(record)
            why = skip_reason(record, status)
            try:
                changes = {"usage_error": why} if why else await ask_usage(service, record, status, owner)
            except Exception as exc:  # noqa: BLE001 - one user's failure must not stop the pass
                log.exception("usage of %s failed unexpectedly", record.user_id)
                changes = {"usage_error": f"failed: {type(exc).__name__}"}
            out.append((record.user_id, changes))

    async def batch(uids: list[str]) -> None:
        records = await store.records_of(uids)
        out: list = []
        await asyncio.gather(*(one(record, out) for record in records))
        if out:
            await store.update_facts_many(out)

    pending: asyncio.Task | None = None
    try:
        while limit is None or asked < limit:
            size = width * 4 if limit is None else min(width * 4, limit - asked)
            claimed = await store.claim_due_usage(limit=size, interval=service.settings.usage_interval,
                                                  owner=owner, enroll=pending is None and not asked)
            if not claimed:
                break
            asked += len(claimed)
            task = asyncio.create_task(batch(claimed))
            if pending is not None:  # two batches in flight: the next one's requests fill the tail
                await pending
            pending = task
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:
            pending.cancel()
    return asked
