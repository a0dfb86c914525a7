"""The storage hierarchy: database -> cache -> file -> env, composed from tiers.

Reads ask a cache tier first (when there is one), then every other tier in order; a tier
that is down is skipped with a warning and shows as down in ``health``. Writes go to the
highest writable tier (the primary) and then refresh the cache. When the primary is down
a write fails loudly, unless ``allow_file_fallback`` lets it land in the file tier.
"""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

from ..errors import StorageError, TierUnavailable
from ..tokens import HIDDEN, TokenRecord
from ..users import fix_command
from .base import UP, AuditEvent, Changes, PendingLogin, Tier, TierHealth

log = logging.getLogger("console.store")


class Hierarchy:
    def __init__(self, tiers: list[Tier], *, allow_file_fallback: bool = False) -> None:
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

    def tier(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def _skip(self, tier: Tier, exc: Exception) -> None:
        message = f"{tier.name} tier skipped: {exc}"
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    # -- reads -------------------------------------------------------------------------

    async def get(self, user_id: str) -> TokenRecord | None:
        if self.cache is not None:
            try:
                hit = await self.cache.get(user_id)
                if hit is not None:
                    return hit
            except TierUnavailable as exc:
                self._skip(self.cache, exc)
        record, tier = await self._first(user_id)
        if record is not None and self.cache is not None and tier is self.primary:
            await self._cache_set(record, fill=True)
        return record

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
        seen: set[str] = set()
        size = first or page_size
        for tier in self.backends:
            try:
                if not tier.CAN_LIST_PAGE:
                    page = [r for r in await tier.list(secrets) if r.user_id not in seen]
                    seen.update(r.user_id for r in page)
                    self._note_unreadable(tier)
                    if page:
                        yield page
                    continue
                after = None
                while True:
                    batch = await tier.list_page(after, size, secrets)
                    page = [r for r in batch if r.user_id not in seen]
                    seen.update(r.user_id for r in page)
                    if page:
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
        await self._cache_set(stored)
        return stored

    async def put_many(self, records: list[TokenRecord], expected: dict[str, int] | None = None,
                       *, authors: dict | None = None) -> list[str]:
        """Bulk write to the primary (restores): one transaction or one rewrite; returns the
        users written (with ``expected``, those whose version had not moved) and drops them
        from the cache on every replica."""
        if not self.primary.CAN_PUT_MANY:
            raise StorageError(f"the {self.primary.name} tier cannot take bulk writes")
        written = await self._write("put_many", records, expected, authors)
        await self.cache_drop_many(written)
        return written

    async def cache_drop_many(self, user_ids: list[str]) -> None:
        """Drop many users from the cache on every replica, pipelined."""
        if self.cache is not None and user_ids:
            try:
                await self.cache.delete_many(user_ids)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)

    async def delete(self, user_id: str) -> bool:
        removed = await self._write("delete", user_id)
        await self._cache_drop(user_id)
        return removed

    async def touch(self, user_id: str, when: float) -> None:
        with contextlib.suppress(TierUnavailable):
            await self.primary.touch(user_id, when)

    async def _cache_set(self, record: TokenRecord, fill: bool = False) -> None:
        if self.cache is not None:
            try:
                # A fill after a read must not replace what a concurrent write cached.
                await (self.cache.fill if fill else self.cache.put)(record)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)

    async def _cache_drop(self, user_id: str) -> None:
        if self.cache is not None:
            try:
                await self.cache.delete(user_id)
            except TierUnavailable as exc:
                self._skip(self.cache, exc)

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
        for tier in self.tiers:
            with contextlib.suppress(Exception):
                await tier.close()
