"""Restores that never roll a token back: open a backup, plan against the store, apply the plan.

"Newer" means a later ``updated_at``, the time a row last changed (a login, a refresh, a
failure note). A restore writes the backup's ``updated_at`` back, so restoring the same file
twice changes nothing. Each user in the backup is:

* ``new``: not stored here: added (every mode);
* ``older``: the stored row is older than the backup's: replaced (``newer``, ``always``);
* ``newer``: the stored row is newer: kept unless ``--overwrite always``;
* ``conflict``: same ``updated_at`` but another expiry, or another Claude account: kept
  unless ``--overwrite always``;
* ``same``: nothing to do;
* ``invalid``: its user id breaks the rule (``users``) or a value is out of type or range
  (``tokens.check_values``): refused, named with the reason; the other users are written.

Whatever the mode, a row that changes after the plan was made (a refresh landing during the
restore) is never overwritten: every write is a compare-and-swap on the version the plan saw.
Writes go in batches, each one transaction (PostgreSQL: COPY into a temporary table, then one
upsert) or one atomic rewrite (file tier). Nothing here prints; faces get progress callbacks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, get_args

from ..errors import BackupError, StorageError, UsageError
from ..store.base import BulkAudit, Tier
from ..tokens import TokenRecord
from ..users import USER_ID_MAX, shown
from .files import check_source, size_text
from .payload import BackupContents, decode_payload
from .progress import Progress, bulk, noop
from .sealed import open_sealed

if TYPE_CHECKING:  # pragma: no cover
    from ..service import AuthService

OVERWRITE_MODES = ("newer", "always", "never")
BATCH = 5000   # users per transaction when restoring into PostgreSQL
IN_FLIGHT = 3  # batches written at once (each its own transaction and connection; 3 beat 2 by 10-25 %
               # in interleaved runs on a busy 2-core machine: commits and round trips overlap)

MAX_BACKUP_BYTES = 2 * 1000 ** 3   # ~500 bytes a user: room for 4 million, refused before reading
_SAME_TIME = 0.0005   # seconds: timestamps round-trip through PostgreSQL at microseconds


async def open_backup(path: str | Path, passphrase: str, *, allow_weak_kdf: bool = False,
                      progress: Progress | None = None) -> BackupContents:
    """Read, check and decrypt a backup file; nothing is written anywhere."""
    progress = progress or noop
    source = check_source(path)
    where = str(path)
    try:
        size = source.stat().st_size
        if size > MAX_BACKUP_BYTES:
            raise BackupError(f"{where} is {size_text(size)}, larger than the 2 GB a backup may be; "
                              "nothing was restored", hint="give the file that `claude-console backup` wrote")
        data = await asyncio.to_thread(source.read_bytes)
    except OSError as exc:
        raise StorageError(f"cannot read {where}: {exc.strerror or exc}") from None
    progress("decrypt", 0, 0)
    header, payload = await asyncio.to_thread(open_sealed, data, passphrase, where,
                                              allow_weak_kdf=allow_weak_kdf)
    contents = decode_payload(payload, where, header)
    progress("decrypt", len(contents.records), len(contents.records))
    return contents


# What the backup holds against what is stored, and what the restore does about it.
ChangeKind = Literal["new", "older", "newer", "conflict", "same", "invalid"]
ChangeAction = Literal["add", "replace", "keep", "none", "refuse"]


@dataclass
class Change:
    """One user of a restore: what the backup holds against what is stored, and what happens."""

    user_id: str
    kind: ChangeKind
    action: ChangeAction
    backup_updated_at: float
    stored_updated_at: float | None = None
    stored_version: int = 0
    reason: str = ""

    @property
    def writes(self) -> bool:
        return self.action in ("add", "replace")

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "kind": self.kind, "action": self.action, "reason": self.reason,
                "backup_updated_at": self.backup_updated_at, "stored_updated_at": self.stored_updated_at}


@dataclass
class RestorePlan:
    path: str
    overwrite: str
    changes: list[Change]
    records: dict[str, TokenRecord]
    authors: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)   # asked for with --user, not in the backup
    backup_created_at: float = 0.0
    tier: str = ""

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in get_args(ChangeKind)}
        for change in self.changes:
            out[change.kind] += 1
        return out

    @property
    def to_write(self) -> list[Change]:
        return [c for c in self.changes if c.writes]

    @property
    def refused(self) -> list[Change]:
        """Users the backup holds but this console will not write (an invalid id or value)."""
        return [c for c in self.changes if c.action == "refuse"]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "overwrite": self.overwrite, "tier": self.tier, "counts": self.counts(),
                "writes": len(self.to_write), "missing": self.missing,
                "backup_created_at": self.backup_created_at,
                "changes": [c.to_dict() for c in self.changes]}


def _same_time(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < _SAME_TIME


def classify(backup: TokenRecord, stored: TokenRecord | None, overwrite: str) -> Change:
    """Compare one user's backed-up record with the stored one (see the module docstring)."""
    uid, b_time = backup.user_id, float(backup.updated_at or 0)
    if stored is None:
        return Change(uid, "new", "add", b_time, reason="not stored here")
    s_time = float(stored.updated_at or 0)
    other_account = bool(backup.account_uuid and stored.account_uuid and backup.account_uuid != stored.account_uuid)
    if other_account:
        kind, reason = "conflict", "the stored token belongs to another Claude account"
    elif _same_time(b_time, s_time):
        if _same_time(backup.expires_at, stored.expires_at):
            return Change(uid, "same", "none", b_time, s_time, stored.version, "already as in the backup")
        kind, reason = "conflict", "same update time, different expiry"
    elif s_time < b_time:
        kind, reason = "older", "the stored token is older than the backup's"
    else:
        kind, reason = "newer", "the stored token is newer than the backup's"
    replace = overwrite == "always" or (overwrite == "newer" and kind == "older")
    return Change(uid, kind, "replace" if replace else "keep", b_time, s_time, stored.version, reason)


def _restorable(service: "AuthService", overwrite: str) -> Tier:
    """The primary tier, once the mode is known and the tier can take a restore."""
    if overwrite not in OVERWRITE_MODES:
        raise UsageError(f"--overwrite {overwrite!r} is not one of {', '.join(OVERWRITE_MODES)}")
    primary = service.store.primary
    if not primary.CAN_PUT_MANY:
        raise StorageError(f"the {primary.name} tier cannot take a restore", hint="use the file or PostgreSQL store")
    return primary


async def plan_restore(service: "AuthService", contents: BackupContents, *, users: list[str] | None = None,
                       overwrite: str = "newer") -> RestorePlan:
    """What a restore would change, against the primary tier as it is now (nothing is written)."""
    primary = _restorable(service, overwrite)
    return _plan(contents, await primary.list(secrets=False), primary.name, users, overwrite)


async def open_and_plan(service: "AuthService", path: str | Path, passphrase: str, *,
                        users: list[str] | None = None, overwrite: str = "newer", allow_weak_kdf: bool = False,
                        progress: Progress | None = None) -> tuple[BackupContents, RestorePlan]:
    """``open_backup`` then ``plan_restore``, the store read while the key is derived: the
    database lists every user while this process waits on the KDF. A failure is the one the
    two steps would raise in turn (the file's first); a listing taken a moment before the file
    is open is as safe as any plan, since every write checks the version the plan saw."""
    primary = _restorable(service, overwrite)
    listing = asyncio.ensure_future(primary.list(secrets=False))
    try:
        contents = await open_backup(path, passphrase, allow_weak_kdf=allow_weak_kdf, progress=progress)
        stored = await listing
    finally:
        if not listing.done():
            listing.cancel()
        await asyncio.gather(listing, return_exceptions=True)
    return contents, _plan(contents, stored, primary.name, users, overwrite)


def _plan(contents: BackupContents, listed: list[TokenRecord], tier: str, users: list[str] | None,
          overwrite: str) -> RestorePlan:
    """Each user of the backup (or of ``users``) against the stored ones (``listed``)."""
    chosen = contents.records
    missing: list[str] = []
    wanted: set = set(users or ())
    if users:
        chosen = [r for r in contents.records if r.user_id in wanted]
        missing = sorted(wanted - {r.user_id for r in chosen})
    with bulk():
        stored = {r.user_id: r for r in listed}
        changes = [classify(r, stored.get(r.user_id), overwrite) for r in chosen]
        for uid, why in contents.refused:   # invalid ids or values: refused per user, never written
            if users and uid not in wanted:
                continue
            changes.append(Change(shown(uid, USER_ID_MAX + 44), "invalid", "refuse", 0.0, reason=why))
        changes.sort(key=lambda c: c.user_id)
        records = {r.user_id: r for r in chosen}
    return RestorePlan(path=contents.path, overwrite=overwrite, changes=changes, records=records,
                       authors=contents.authors, missing=missing, backup_created_at=contents.created_at,
                       tier=tier)


@dataclass
class RestoreResult:
    written: list[str] = field(default_factory=list)
    changed_meanwhile: list[str] = field(default_factory=list)  # kept: a newer write landed first
    kept: int = 0
    unchanged: int = 0
    refused: int = 0   # invalid ids or values in the backup: never written
    batches: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"written": len(self.written), "changed_meanwhile": self.changed_meanwhile, "kept": self.kept,
                "unchanged": self.unchanged, "refused": self.refused, "batches": self.batches, "seconds": round(self.seconds, 3)}


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def apply_restore(service: "AuthService", plan: RestorePlan, *, batch_size: int | None = None,
                        progress: Progress | None = None) -> RestoreResult:
    """Write the plan in batches, each one transaction; a row changed since the plan is kept."""
    progress = progress or noop
    started = time.monotonic()
    store = service.store
    todo = plan.to_write
    result = RestoreResult(kept=sum(1 for c in plan.changes if c.action == "keep"),
                           unchanged=sum(1 for c in plan.changes if c.action == "none"),
                           refused=len(plan.refused))
    one_file = store.primary.REWRITES_WHOLE   # one rewrite of the whole file is its cheapest batch
    size = batch_size or (len(todo) or 1 if one_file else BATCH)
    where = Path(plan.path).name
    details = {kind: f"from {where} ({text})" for kind, text in _RESTORE_DETAIL.items()}
    done = 0

    async def write(batch: list[Change]) -> None:
        nonlocal done
        records = [plan.records[c.user_id] for c in batch]
        expected = {c.user_id: c.stored_version for c in batch}
        authors = {c.user_id: plan.authors[c.user_id] for c in batch if c.user_id in plan.authors}
        # Each user written is audited by the write itself (one statement on PostgreSQL).
        audit = BulkAudit("restore", service.actor, {c.user_id: details[c.kind] for c in batch})
        written = await store.put_many(records, expected, authors=authors, audit=audit)
        got = set(written)
        result.written.extend(written)
        result.changed_meanwhile.extend(c.user_id for c in batch if c.user_id not in got)
        for uid in written:
            service.forget(uid)
        result.batches += 1
        done += len(batch)
        progress("write", done, len(todo))

    progress("write", 0, len(todo))
    # IN_FLIGHT batches at once (each its own transaction): one is encrypted here while the
    # database writes the others. The file tier takes them one at a time.
    flying: list[asyncio.Future] = []
    with bulk():
        try:
            for batch in _batches(todo, size):
                flying.append(asyncio.ensure_future(write(batch)))
                if len(flying) >= (1 if one_file else IN_FLIGHT):
                    await flying.pop(0)
            while flying:
                await flying.pop(0)
        except BaseException:
            for task in flying:
                task.cancel()
            await asyncio.gather(*flying, return_exceptions=True)
            raise
    result.seconds = time.monotonic() - started
    return result


_RESTORE_DETAIL = {"new": "added", "older": "replaced an older token", "newer": "replaced a newer token",
                   "conflict": "replaced a conflicting token", "same": "unchanged"}
