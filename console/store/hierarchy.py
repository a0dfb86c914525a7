"""The storage hierarchy: database -> cache -> file -> env, composed from tiers.

Reads ask a cache tier first (when there is one), then every other tier in order; a tier
that is down is skipped with a warning and shows as down in ``health``. Writes go to the
highest writable tier (the primary) and then refresh the cache. When the primary is down
a write fails loudly, unless ``allow_file_fallback`` lets it land in the file tier.

A cache is never trusted for longer than ``confirm_every`` seconds: a cached record is served
only while the primary confirmed the same version and access token within that time (read
again from the primary otherwise), and a cache write that could not reach the cache (Redis
down or frozen during a logout or a refresh) is queued and retried until it lands. So a
logout or a rotation is seen by every process within ``confirm_every``, whatever the cache
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from operator import attrgetter
from typing import AsyncIterator

from ..errors import StorageError, TierUnavailable
from ..tokens import HIDDEN, TokenRecord
from ..users import fix_command
from .base import UP, AuditEvent, BulkAudit, Changes, PendingLogin, Tier, TierHealth

_USER_ID = attrgetter("user_id")
log = logging.getLogger("console.store")


def _stamp(record: TokenRecord) -> tuple:
    """What must match between a cached record and the primary's: only a primary write moves it."""
    return record.version, record.access_token


class Hierarchy:
    def __init__(self, tiers: list[Tier], *, allow_file_fallback: bool = False,
                 confirm_every: float = 5.0) -> None:
        self.tiers = list(tiers)
        self.cache = next((t for t in self.tiers if t.IS_CACHE), None)
        self.backends = [t for t in self.tiers if t is not self.cache]
        writable = [t for t in self.backends if t.writable]
        if not writable:
            raise StorageError("no writable storage tier is configured",
                               hint="set claude_oauth.token_file or DATABASE_URL")
        self.primary = writable[0]
        self.fallback = next((t for t in writable[1:] if t.IS_FALLBACK), None) \
            if allow_file_fallback else None
        self.warnings: list[str] = []
        self.confirm_every = confirm_every
        self._confirmed: dict[str, tuple[tuple, float]] = {}  # user -> (stamp, monotonic time)
        self._unsent: dict[str, TokenRecord | None] = {}     # cache writes to retry (None: drop)
        self._flusher: asyncio.Task | None = None

    def tier(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def _skip(self, tier: Tier, exc: Exception) -> None:
        message = f"{tier.name} tier skipped: {exc}"
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    # -- reads -------------------------------------------------------------------------

    async def get(self, user_id: str) -> TokenRecord | None:
        hit = None
        if self.cache is not None:
            try:
                hit = await self.cache.get(user_id)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)
            if hit is not None and self.confirmed_age(hit) is not None:
                return hit
        try:
            record, tier = await self._first(user_id)  # confirms (or un-confirms) the user
        except TierUnavailable:
            if hit is not None:  # nothing can be written while the primary is down: serve the cache
                return hit
            raise
        if hit is not None:
            if record is not None and _stamp(record) == _stamp(hit):
                return hit
            # The cache is behind the primary (a write whose cache update was lost): fix it.
            fixed = record if record is not None and tier is self.primary else None
            log.info("cached token of %s is older than the %s tier's; replaced", user_id, self.primary.name)
            await self._cache_write(user_id, fixed)
            return record
        if record is not None and self.cache is not None and tier is self.primary:
            await self._cache_set(record, fill=True)
        return record

    def confirmed_age(self, record: TokenRecord) -> float | None:
        """Seconds since the primary last showed this very record (same version and access
        token), while that is under ``confirm_every``; else None."""
        seen = self._confirmed.get(record.user_id)
        if seen is None or seen[0] != _stamp(record):
            return None
        age = time.monotonic() - seen[1]
        return age if age < self.confirm_every else None

    def _confirm(self, user_id: str, record: TokenRecord | None) -> None:
        if record is None:
            self._confirmed.pop(user_id, None)
        else:
            self._confirmed[user_id] = (_stamp(record), time.monotonic())

    async def get_fresh(self, user_id: str) -> TokenRecord | None:
        """Bypass the cache: used after taking a refresh lock."""
        return (await self._first(user_id))[0]

    async def _first(self, user_id: str) -> tuple[TokenRecord | None, Tier | None]:
        """The first backend that holds the user. If the primary is down and no lower tier
        has the user, that is "unreachable", not "not logged in": we could not look."""
        down = None
        for tier in self.backends:
            try:
                record = await tier.get(user_id)
            except TierUnavailable as exc:
                self._skip(tier, exc)
                down = down or (exc if tier is self.primary else None)
                continue
            if tier is self.primary:
                self._confirm(user_id, record)
            if record is not None:
                return record, tier
        if down is not None:
            raise down
        return None, None

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        listed: list[list[TokenRecord]] = []
        for tier in self.backends:
            try:
                records = await tier.list(secrets)
            except TierUnavailable as exc:
                if tier is self.primary:  # a listing without the primary would look complete
                    raise
                self._skip(tier, exc)
                continue
            if records:
                listed.append(records)
            self._note_unreadable(tier)
        if len(listed) == 1:   # one tier holds users (the usual case): its ids are unique already
            return listed[0]
        seen: dict[str, TokenRecord] = {}
        for records in listed:
            for record in records:
                seen.setdefault(record.user_id, record)
        return list(seen.values())

    def _note_unreadable(self, tier: Tier) -> None:
        """Users a tier could not read (a bad entry in the token file): one warning each."""
        for uid, why in tier.unreadable.items():
            message = f"user {uid!r} in the {tier.name} tier is unreadable ({why}); " \
                      f"run: {fix_command('login', uid)}"
            if message not in self.warnings:
                self.warnings.append(message)
                log.warning(message)

    async def list_pages(self, page_size: int = 20000, secrets: bool = False, *,
                         first: int | None = None) -> AsyncIterator[list[TokenRecord]]:
        """``list`` a page at a time: tiers that can ``list_page`` are read in keyset pages (the
        first one ``first`` long, if given), the rest whole. Earlier tiers still win: a user
        already yielded is not yielded again."""
        yielded: list[list[TokenRecord]] = []   # the ids in them are made a set only if needed
        seen: set[str] | None = None

        def unseen(batch: list[TokenRecord]) -> list[TokenRecord]:
            nonlocal seen
            if not yielded or not batch:    # the first tier with users: nothing to compare with
                return batch
            if seen is None:
                seen = {uid for page in yielded for uid in map(_USER_ID, page)}
            page = [r for r in batch if r.user_id not in seen]
            seen.update(map(_USER_ID, page))
            return page

        size = first or page_size
        for tier in self.backends:
            try:
                if not tier.CAN_LIST_PAGE:
                    page = unseen(await tier.list(secrets))
                    self._note_unreadable(tier)
                    if page:
                        yielded.append(page)
                        yield page
                    continue
                after, listing = None, not yielded
                while True:
                    batch = await tier.list_page(after, size, secrets)
                    page = batch if listing else unseen(batch)   # a tier's own ids are unique
                    if page:
                        yielded.append(page)
                        yield page
                    if len(batch) < size:
                        break
                    after, size = batch[-1].user_id, page_size
            except TierUnavailable as exc:
                if tier is self.primary:
                    raise
                self._skip(tier, exc)

    # -- watching: what changed since a cursor (the primary's feed) ----------------------

    async def change_cursor(self):
        """Take before a full listing; ``None`` when the primary cannot say what changed."""
        return await self.primary.change_cursor() if self.primary.CAN_WATCH else None

    async def changes_since(self, cursor) -> Changes:
        if cursor is None or not self.primary.CAN_WATCH:
            return Changes(None, everything=True)
        changes = await self.primary.changes_since(cursor)
        if changes.removed and not changes.everything:
            # Gone from the primary, a user may still be in a lower tier (the environment).
            lower = [t for t in self.backends if t is not self.primary]
            still: list[TokenRecord] = []
            for uid in changes.removed:
                for tier in lower:
                    try:
                        record = await tier.get(uid)
                    except TierUnavailable:
                        continue
                    if record is not None:
                        still.append(record.evolve(access_token=HIDDEN, refresh_token=HIDDEN
                                                   if record.refresh_token else None))
                        break
            if still:
                kept = {r.user_id for r in still}
                changes.records.extend(still)
                changes.removed = [uid for uid in changes.removed if uid not in kept]
        return changes

    # -- writes ------------------------------------------------------------------------

    async def _write(self, op: str, *args):
        try:
            return await getattr(self.primary, op)(*args)
        except TierUnavailable as exc:
            if self.fallback is None:
                raise TierUnavailable(
                    f"cannot write to the {self.primary.name} tier: {exc.message}",
                    hint="nothing was stored; bring it back, or set claude_oauth.allow_file_fallback") from None
            self._skip(self.primary, exc)
            log.warning("writing to the file tier because %s is down (allow_file_fallback)",
                        self.primary.name)
            return await getattr(self.fallback, op)(*args)

    async def put(self, record: TokenRecord, expected_version: int | None = None) -> TokenRecord:
        stored = await self._write("put", record, expected_version)
        self._confirm(stored.user_id, stored)
        await self._cache_set(stored)
        return stored

    async def put_many(self, records: list[TokenRecord], expected: dict[str, int] | None = None,
                       *, authors: dict | None = None, audit: BulkAudit | None = None) -> list[str]:
        """Bulk write to the primary (restores): one transaction or one rewrite; returns the
        users written (with ``expected``, those whose version had not moved) and drops them
        from the cache on every replica. ``audit``: the tier that takes the write records an
        event for each user written, with the write."""
        if not self.primary.CAN_PUT_MANY:
            raise StorageError(f"the {self.primary.name} tier cannot take bulk writes")
        written = await self._write("put_many", records, expected, authors, audit)
        for uid in written:
            self._confirmed.pop(uid, None)
        await self.cache_drop_many(written)
        return written

    async def cache_drop_many(self, user_ids: list[str]) -> None:
        """Drop many users from the cache on every replica, pipelined."""
        if self.cache is not None and user_ids:
            for uid in user_ids:
                self._confirmed.pop(uid, None)
            try:
                await self.cache.delete_many(user_ids)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)
                for uid in user_ids:
                    self._queue(uid, None)

    async def delete(self, user_id: str) -> bool:
        removed = await self._write("delete", user_id)
        self._confirmed.pop(user_id, None)
        await self._cache_drop(user_id)
        return removed

    async def touch(self, user_id: str, when: float) -> None:
        with contextlib.suppress(TierUnavailable):
            await self.primary.touch(user_id, when)

    async def _cache_set(self, record: TokenRecord, fill: bool = False) -> None:
        if self.cache is None:
            return
        if fill:
            try:  # a fill after a read must not replace what a concurrent write cached
                await self.cache.fill(record)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)
            return
        await self._cache_write(record.user_id, record)

    async def _cache_drop(self, user_id: str) -> None:
        if self.cache is not None:
            await self._cache_write(user_id, None)

    async def _cache_write(self, user_id: str, record: TokenRecord | None) -> None:
        """Replace the cached entry (``None``: a tombstone) and tell every replica; if the cache
        cannot take it now, queue it and keep retrying until it does."""
        self._unsent.pop(user_id, None)  # this write supersedes a queued one
        try:
            if record is None:
                await self.cache.delete(user_id)
            else:
                await self.cache.put(record)
        except TierUnavailable as exc:
            self._skip(self.cache, exc)
            self._queue(user_id, record)

    def _queue(self, user_id: str, record: TokenRecord | None) -> None:
        self._unsent[user_id] = record
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_forever())

    @property
    def unsent(self) -> int:
        """Cache updates (tombstones, new versions) queued because the cache did not take them."""
        return len(self._unsent)

    async def flush_cache(self) -> int:
        """Send the queued cache updates; returns how many are still queued."""
        for uid, record in list(self._unsent.items()):
            try:
                if record is None:
                    await self.cache.delete(uid)
                else:
                    await self.cache.put(record)
            except TierUnavailable:
                break
            if uid in self._unsent and self._unsent[uid] is record:
                del self._unsent[uid]
        return len(self._unsent)

    async def _flush_forever(self) -> None:
        delay = 0.2
        while self._unsent:
            await asyncio.sleep(delay)
            if await self.flush_cache():
                delay = min(delay * 2, 2.0)
            else:
                log.info("queued cache updates delivered to %s", self.cache.name)

    def on_invalidate(self, callback) -> None:
        """Call ``callback(user_id)`` when another process changes a user (``None``: anyone)."""
        if self.cache is not None:
            self.cache.listen(callback)

    @contextlib.asynccontextmanager
    async def locked(self, user_id: str) -> AsyncIterator[None]:
        async with self.primary.locked(user_id):
            yield

    # -- pending logins and audit live in the primary -----------------------------------

    async def save_pending(self, pending: PendingLogin) -> None:
        await self._write("save_pending", pending)

    async def take_pending(self, state: str) -> PendingLogin | None:
        return await self.primary.take_pending(state)

    async def newest_pending(self, user_id: str | None = None) -> PendingLogin | None:
        return await self.primary.newest_pending(user_id)

    async def sweep_pending(self) -> int:
        return await self.primary.sweep_pending()

    async def append_audit(self, event: AuditEvent) -> None:
        try:
            await self._write("append_audit", event)
        except StorageError as exc:  # an audit failure must not undo a token change
            log.error("audit event %s for %s not recorded: %s", event.action, event.user_id, exc)

    async def append_audit_many(self, events: list[AuditEvent]) -> None:
        """Many events at once (a restore's): one write where the primary can, else one by one."""
        if not self.primary.CAN_APPEND_AUDIT_MANY:
            for event in events:
                await self.append_audit(event)
            return
        try:
            await self.primary.append_audit_many(events)
        except StorageError as exc:
            log.error("%d audit events (%s) not recorded: %s", len(events),
                      events[0].action if events else "", exc)

    async def audit_trail(self, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        return await self.primary.audit_trail(user_id, limit)

    async def claim_due(self, **rule) -> list[tuple[str, int]]:
        """The users due for a background refresh, as the primary claims them (``Tier.claim_due``)."""
        return await self.primary.claim_due(**rule)

    # -- usage facts: the primary keeps them (and the lease), the cache serves reads -----

    @property
    def keeps_facts(self) -> bool:
        return self.primary.CAN_KEEP_FACTS

    async def load_facts(self, user_ids: list[str] | None = None) -> dict[str, dict]:
        """Facts of ``user_ids`` (None: everyone, from the primary), the cache first."""
        if user_ids is None or self.cache is None:
            return await self.primary.load_facts(user_ids)
        try:
            found = await self.cache.get_facts(list(user_ids))
        except TierUnavailable as exc:
            self._skip(self.cache, exc)
            return await self.primary.load_facts(user_ids)
        missing = [u for u in user_ids if u not in found]
        if missing:
            loaded = await self.primary.load_facts(missing)
            found.update(loaded)
            await self._cache_facts(list(loaded.values()))
        return found

    async def load_brief_facts(self, user_ids: list[str] | None = None) -> list[tuple] | None:
        """The primary's brief facts (``Tier.load_brief_facts``); None when it cannot say."""
        if not self.primary.CAN_BRIEF_FACTS:
            return None
        return await self.primary.load_brief_facts(user_ids)

    async def brief_facts_changed(self, since: float | None) -> tuple[float, list[tuple]] | None:
        """The primary's ``Tier.brief_facts_changed``; None when it cannot say."""
        if not self.primary.CAN_BRIEF_FACTS:
            return None
        return await self.primary.brief_facts_changed(since)

    async def update_facts(self, user_id: str, changes: dict) -> dict:
        stored = await self.primary.update_facts(user_id, changes)
        await self._cache_facts([stored])
        return stored

    async def update_facts_many(self, changes: list[tuple[str, dict]]) -> None:
        """A polling batch's answers in one write; their cache entries are dropped (one call),
        so the next read fills them from the primary."""
        await self.primary.update_facts_many(changes)
        if self.cache is not None:
            try:
                await self.cache.drop_facts_many([u for u, _ in changes])
            except TierUnavailable as exc:
                self._skip(self.cache, exc)

    async def records_of(self, user_ids: list[str]) -> list[TokenRecord]:
        return await self.primary.records_of(user_ids)

    async def _cache_facts(self, facts: list[dict]) -> None:
        if self.cache is not None and facts:
            try:
                await self.cache.set_facts(facts)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)

    async def claim_fetch(self, user_id: str, *, interval: float, owner: str) -> bool:
        return await self.primary.claim_fetch(user_id, interval=interval, owner=owner)

    async def claim_due_usage(self, *, limit: int, interval: float, owner: str,
                              enroll: bool = True) -> list[str]:
        return await self.primary.claim_due_usage(limit=limit, interval=interval, owner=owner, enroll=enroll)

    async def defer_fetch(self, user_id: str, until: float) -> None:
        await self.primary.defer_fetch(user_id, until)

    async def drop_facts(self, user_id: str) -> None:
        await self.primary.drop_facts(user_id)
        if self.cache is not None:
            try:
                await self.cache.drop_facts(user_id)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)

    def primary_up(self, health: list[TierHealth]) -> bool:
        """Whether ``health`` (from ``health()``) says the tier that holds the writes is up: the one
        answer to "is the store up?"; other tiers being down only degrades it."""
        return any(h.name == self.primary.name and h.state == UP for h in health)

    async def health(self) -> list[TierHealth]:
        out = []
        for tier in self.tiers:
            try:
                out.append(await tier.health())
            except StorageError as exc:
                out.append(TierHealth(tier.name, "down", str(exc), writable=tier.writable))
        return out

    async def close(self) -> None:
        task, self._flusher = self._flusher, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._unsent:
            with contextlib.suppress(Exception):
                await self.flush_cache()  # one last try (instant while the cache is known down)
            if self._unsent:
                log.warning("%d cache changes (tombstones, new versions) did not reach %s; other processes stop "
                            "trusting their cached copies within %gs", len(self._unsent), self.cache.name,
                            self.confirm_every)
        for tier in self.tiers:
            with contextlib.suppress(Exception):
                await tier.close()
