"""The rescue journal: where a rotated refresh token lands first, before any store.

The provider spends the old refresh token the moment it answers; until the new one is stored
it lives only in this process. So the answer is written here first: a small local file of
fixed-size slots, 0600 in a 0700 folder, filled with zeros when it is made (real blocks,
not a sparse file), so writing an entry rewrites blocks the file already owns and still
works on a full disk. Each entry is the whole new record, sealed with the store's keyring
(user id as associated data) as the store seals tokens, and fsync'd before the store write
starts. Once the store holds it the entry is marked done (one byte, no fsync: replaying a
done entry is a no-op, because replays are compare-and-swaps on the version it was based on).

A slot: ``MAGIC | state | user digest (8) | length (4) | crc32 (4) | payload``. States:
0 empty, 1 pending, 2 done. Several processes on one host may share one journal: slots are
claimed under an ``flock`` on the file; readers find pending entries with one ``find`` over
a shared memory map.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .crypto import Keyring
from .errors import StorageError
from .store.fsutil import ensure_private_dir
from .tokens import TokenRecord

log = logging.getLogger("console.journal")

MAGIC = b"CCJ1"
EMPTY, PENDING, DONE = 0, 1, 2
_HEAD = struct.Struct(">4sB8sII")   # magic, state, user digest, payload length, crc32
SLOT_SIZE = 4096
DEFAULT_SLOTS = 256                 # 1 MiB: 256 rotations in flight at once before memory only


_SEALED_FIELDS = tuple(k for k in TokenRecord.__dataclass_fields__ if k not in ("source", "user_id"))


def user_digest(user_id: str) -> bytes:
    return hashlib.sha256(user_id.encode()).digest()[:8]


@dataclass
class Entry:
    """One rotated record waiting for (or done with) its store write."""

    slot: int
    record: TokenRecord
    base_version: int        # the stored version the rotation started from (the CAS's expectation)
    written_at: float
    pid: int

    @property
    def user_id(self) -> str:
        return self.record.user_id


class JournalFull(StorageError):
    """Every slot holds a pending entry: the rotated token stays in memory only."""


class RescueJournal:
    def __init__(self, path: Path | str, keyring: Keyring | None = None, *, slots: int = DEFAULT_SLOTS) -> None:
        self.path = Path(os.path.expanduser(str(path)))
        self.keyring = keyring or Keyring([])
        self.slots = max(1, int(slots))
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._cursor = 0
        self.written_at = 0.0   # monotonic time the last entry reached the page cache
        self._writes = 0        # entries written so far, and how many of them a sync covers:
        self._synced = 0        # an entry is durable once its number is <= _synced
        self._syncing: asyncio.Future | None = None

    # -- opening: made once, full size, before it is ever needed ------------------------

    def open(self) -> None:
        """Make (or open) the journal at its full size; raises ``StorageError`` if it cannot."""
        if self._fd is not None:
            return
        size = self.slots * SLOT_SIZE
        try:
            ensure_private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open the rescue journal {self.path}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)
            have = os.fstat(fd).st_size
            if have >= SLOT_SIZE:  # an existing journal keeps its size (its entries are in it)
                self.slots = have // SLOT_SIZE
            else:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if os.fstat(fd).st_size < size:
                        zeros = bytes(SLOT_SIZE)
                        for slot in range(self.slots):  # written, not fallocate'd: the blocks are ours
                            os.pwrite(fd, zeros, slot * SLOT_SIZE)
                        os.fsync(fd)
                        _fsync_dir(self.path.parent)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, self.slots * SLOT_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot prepare the rescue journal {self.path}: {exc.strerror}") from None
        self._fd = fd

    def _exists(self) -> bool:
        return self._fd is not None or self.path.exists()

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(Exception):
                self._map.close()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._map = None

    # -- writing ---------------------------------------------------------------------------

    def _seal(self, record: TokenRecord, base_version: int) -> bytes:
        """The user id stays readable (it names whose entry this is, as audit lines do); the
        record, tokens and all, is sealed under the store's first key when one is configured."""
        fields = {k: getattr(record, k) for k in _SEALED_FIELDS}  # not asdict(): its deep copy is slow
        fields["scopes"] = list(record.scopes)
        body = json.dumps({"record": fields,
                           "base": base_version, "at": time.time(), "pid": os.getpid()},
                          separators=(",", ":"))
        sealed = self.keyring.enabled
        if sealed:
            body = self.keyring.encrypt(body, record.user_id)
        return json.dumps({"user": record.user_id, "sealed": sealed, "body": body},
                          separators=(",", ":")).encode()

    def append(self, record: TokenRecord, base_version: int) -> int:
        """Write a pending entry and fsync it; returns its slot. Raises ``StorageError``."""
        slot = self._write(record, base_version)
        try:
            os.fdatasync(self._fd)                    # nor a crash of the machine
        except OSError as exc:
            raise StorageError(f"cannot write the rescue journal {self.path}: {exc.strerror}") from None
        self._synced = self._writes
        return slot

    async def append_durably(self, record: TokenRecord, base_version: int) -> int:
        """``append`` for the event loop: the entry is on disk when this returns, but the sync
        runs in a thread and is shared (group commit): every entry written before a sync
        starts is covered by it, so 32 refreshes at once wait for one or two syncs, not 32 in
        a row with the loop stopped. Raises ``StorageError``."""
        slot = self._write(record, base_version)
        mine = self._writes
        while self._synced < mine:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync(self._fd, self._writes))
            await asyncio.shield(self._syncing)
        return slot

    async def _sync(self, fd: int, upto: int) -> None:
        try:
            await asyncio.to_thread(os.fdatasync, fd)
        except OSError as exc:
            raise StorageError(f"cannot write the rescue journal {self.path}: {exc.strerror}") from None
        finally:
            self._syncing = None
        self._synced = max(self._synced, upto)

    def _write(self, record: TokenRecord, base_version: int) -> int:
        """Write a pending entry to the page cache (not yet synced); returns its slot."""
        self.open()
        payload = self._seal(record, base_version)
        if _HEAD.size + len(payload) > SLOT_SIZE:
            raise StorageError(f"a rescue journal entry for user {record.user_id!r} is too large "
                               f"({len(payload)} bytes)")
        head = _HEAD.pack(MAGIC, PENDING, user_digest(record.user_id), len(payload), zlib.crc32(payload))
        fd = self._fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # claiming a slot: other processes share the file
            try:
                slot = self._free_slot()
                os.pwrite(fd, head + payload, slot * SLOT_SIZE)
                self.written_at = time.monotonic()  # a kill -9 can no longer lose it (page cache)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise StorageError(f"cannot write the rescue journal {self.path}: {exc.strerror}") from None
        self._writes += 1
        return slot

    def _free_slot(self) -> int:
        view = self._map
        for step in range(self.slots):
            slot = (self._cursor + step) % self.slots
            if view[slot * SLOT_SIZE + 4] != PENDING:
                self._cursor = slot + 1
                return slot
        raise JournalFull(f"the rescue journal {self.path} is full ({self.slots} entries not yet stored)",
                          hint="the tokens are kept in memory until the store takes them")

    def mark_done(self, slot: int) -> None:
        """The store holds the entry now. Not fsync'd: a replay of a done entry changes nothing."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, bytes([DONE]), slot * SLOT_SIZE + 4)

    # -- reading ---------------------------------------------------------------------------

    def pending(self, user_id: str | None = None) -> list[Entry]:
        """Entries not yet marked done (for ``user_id``, or everyone), oldest first. An entry
        this keyring cannot open, or a torn one, is skipped with a warning. A journal that was
        never made holds nothing: reading does not make it."""
        if not self._exists():
            return []
        try:
            self.open()
        except StorageError:
            return []
        view, out = self._map, []
        want = MAGIC + bytes([PENDING]) + (user_digest(user_id) if user_id is not None else b"")
        at = view.find(want)
        while at >= 0:
            if at % SLOT_SIZE == 0:
                entry = self._read(at // SLOT_SIZE)
                if entry is not None and (user_id is None or entry.user_id == user_id):
                    out.append(entry)
            at = view.find(want, at + 1)
        return sorted(out, key=lambda e: e.written_at)

    def may_hold(self, user_id: str) -> bool:
        """Whether a pending entry may be ``user_id``'s (false positives allowed): cheap enough
        to ask before every read. Once the journal is open this reads the shared memory map and
        makes no system call: another process's entry is in the map as soon as its write
        returns. Before that, one ``stat`` says whether the journal exists yet."""
        view = self._map
        if view is None:
            if not self._exists():
                return False
            try:
                self.open()
            except StorageError:
                return False
            view = self._map
        states = view[4::SLOT_SIZE]          # every slot's state byte, in one slice
        if PENDING not in states:
            return False
        digest, at = user_digest(user_id), states.find(PENDING)
        while at >= 0:
            if view[at * SLOT_SIZE + 5:at * SLOT_SIZE + 13] == digest:
                return True
            at = states.find(PENDING, at + 1)
        return False

    def _read(self, slot: int) -> Entry | None:
        start = slot * SLOT_SIZE
        magic, state, _, length, crc = _HEAD.unpack_from(self._map, start)
        if magic != MAGIC or state != PENDING or _HEAD.size + length > SLOT_SIZE:
            return None
        payload = bytes(self._map[start + _HEAD.size:start + _HEAD.size + length])
        if zlib.crc32(payload) != crc:
            return None  # torn by a kill mid-write: its append had not returned, nothing relied on it
        try:
            outer = json.loads(payload)
            uid, body = outer["user"], outer["body"]
            if outer.get("sealed"):
                body = self.keyring.decrypt(body, uid)
            data = json.loads(body)
            record = TokenRecord.from_dict({**data["record"], "user_id": uid})
            return Entry(slot, record, int(data["base"]), float(data["at"]), int(data["pid"]))
        except (ValueError, KeyError, TypeError, StorageError) as exc:
            log.warning("rescue journal %s: slot %d cannot be read (%s); left as it is",
                        self.path, slot, getattr(exc, "message", exc))
            return None

    def pending_digests(self) -> set[bytes]:
        """User digests of every pending slot, without opening any (for counting and health)."""
        if not self._exists():
            return set()
        try:
            self.open()
        except StorageError:
            return set()
        view, out = self._map, set()
        want = MAGIC + bytes([PENDING])
        at = view.find(want)
        while at >= 0:
            if at % SLOT_SIZE == 0:
                out.add(bytes(view[at + 5:at + 13]))
            at = view.find(want, at + 1)
        return out


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise
    finally:
        os.close(fd)
