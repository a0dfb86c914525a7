"""The file tier: one 0600 JSON file holding every user, plus its state folder.

Layout beside the token file ``T`` (default ``~/.litellm/claude_tokens.json``):
``T`` itself, ``T.stem + '.audit.jsonl'`` (audit log), and ``T.stem + '.d/'`` holding
``pending/`` (one file per pending login) and ``locks/`` (one lock file per user plus
the file-wide write lock). Everything is 0600 in 0700 folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator

from ..crypto import Keyring, is_encrypted
from ..errors import CryptoError, NoKeyConfigured, StaleWrite, StorageCorrupt, StorageError
from ..tokens import HIDDEN, BadValue, TokenRecord, check_values, parse_expires_at
from ..users import fix_command
from .file_facts import FileFacts
from .base import (AuditEvent, BulkAudit, Changes, PendingLogin, RotationReport, Tier, TierHealth, UP, DOWN,
                   foreign_pending_error, warn_foreign_pending)
from .fsutil import (FULL, async_file_lock, atomic_write, check_private_file, ensure_private_dir,
                     file_lock, sweep_temp_files, take_lock)

log = logging.getLogger("console.store.file")

FORMAT = "claude-console/1"
_SECRET_FIELDS = ("access_token", "refresh_token")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FileTier(FileFacts, Tier):
    name = "file"
    writable = True
    IS_FALLBACK = REWRITES_WHOLE = CAN_PUT_MANY = CAN_ROTATE_KEYS = CAN_WATCH = True

    def __init__(self, path: Path | str, keyring: Keyring | None = None) -> None:
        self.path = Path(os.path.expanduser(str(path)))
        self.keyring = keyring or Keyring([])
        self.state_dir = self.path.parent / f"{self.path.stem}.d"
        self.pending_dir = self.state_dir / "pending"
        self.lock_dir = self.state_dir / "locks"
        self.audit_path = self.path.parent / f"{self.path.stem}.audit.jsonl"
        self._write_lock = self.lock_dir / "_file.lock"
        # The gate: long rewrites (restores, key rotations) take it exclusively; a refresh takes
        # it shared before it spends a token and keeps it until its save is done, so a long
        # rewrite never makes a save wait after the provider rotated (refreshes do not queue
        # behind each other: they all share it).
        self._gate = self.lock_dir / "_gate.lock"
        self._gate_fds: dict[str, int] = {}
        self._cache_key: tuple | None = None
        self._cache_doc: dict[str, Any] | None = None
        # Users whose entry the last listing could not read (user id -> why): shown as such,
        # while every other user stays readable.
        self.unreadable: dict[str, str] = {}

    # -- reading -----------------------------------------------------------------------

    def _load_doc(self) -> dict[str, Any]:
        """Parse the file (cached by inode, mtime and size); ``{}`` when absent."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache_key = self._cache_doc = None
            return {"format": FORMAT, "users": {}}
        except OSError as exc:
            raise StorageError(f"cannot read token file {self.path}: {exc.strerror}") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._cache_key and self._cache_doc is not None:
            return self._cache_doc
        check_private_file(self.path, st)
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read token file {self.path}: {exc.strerror}") from None
        doc = self._parse(raw)
        self._cache_key, self._cache_doc = key, doc
        return doc

    def _parse(self, raw: bytes) -> dict[str, Any]:
        fix = (f"it was left untouched; repair it, or move it aside (mv {self.path} {self.path}.broken) "
               "and log in again")
        if not raw.strip():
            return {"format": FORMAT, "users": {}}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
            raise StorageCorrupt(f"token file {self.path} is not valid JSON{where}", hint=fix) from None
        if not isinstance(data, dict):
            raise StorageCorrupt(f"token file {self.path} does not hold a JSON object", hint=fix)
        if isinstance(data.get("users"), dict):
            return data
        if "accessToken" in data:  # the seed's single-user format
            return {"format": FORMAT, "users": {"default": _from_seed(data)}}
        if isinstance(data.get("claudeAiOauth"), dict):  # Claude Code's credentials file
            return {"format": FORMAT, "users": {"default": _from_seed(data["claudeAiOauth"])}}
        if not data:
            return {"format": FORMAT, "users": {}}
        raise StorageCorrupt(f"token file {self.path} is JSON but not a token file this console knows",
                             hint=fix)

    def _decode(self, user_id: str, entry: dict[str, Any], secrets: bool = True) -> TokenRecord:
        if not isinstance(entry, dict) or not entry.get("access_token"):
            raise StorageCorrupt(f"token file {self.path}: the entry for user {user_id!r} is malformed",
                                 hint=f"run: {fix_command('login', user_id)}, or restore the file from a backup")
        try:
            check_values(entry)
        except BadValue as exc:
            raise StorageCorrupt(f"token file {self.path}: the entry for user {user_id!r} is unreadable: {exc}",
                                 hint=f"run: {fix_command('login', user_id)}, or restore the file from a backup") from None
        data = dict(entry)
        locked = None if secrets else self.keyring.locked_by(data.get("access_token"))
        for key in _SECRET_FIELDS:
            value = data.get(key)
            if value and not secrets:
                data[key] = HIDDEN
            elif value and is_encrypted(value):
                data[key] = self.keyring.decrypt(value, user_id)
        data["user_id"] = user_id
        data["source"] = self.name
        record = TokenRecord.from_dict(data)
        if locked:
            record.locked = locked
        return record

    def _encode(self, record: TokenRecord) -> dict[str, Any]:
        data = record.to_dict()
        data.pop("user_id", None)
        data.pop("source", None)
        if self.keyring.enabled:
            for key in _SECRET_FIELDS:
                if data.get(key):
                    data[key] = self.keyring.encrypt(data[key], record.user_id)
        return data

    async def get(self, user_id: str) -> TokenRecord | None:
        entry = self._load_doc()["users"].get(user_id)
        return None if entry is None else self._decode(user_id, entry)

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        records, unreadable = [], {}
        for uid, entry in self._load_doc()["users"].items():
            try:
                records.append(self._decode(uid, entry, secrets))
            except StorageCorrupt as exc:  # one bad entry: that user is unreadable, not the store
                unreadable[uid] = exc.message.rsplit(": ", 1)[-1]
        self.unreadable = unreadable
        return records

    # -- watching: every write replaces the file, so its inode, mtime and size say "changed" --

    def _stamp(self) -> tuple:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ("absent",)
        except OSError as exc:
            raise StorageError(f"cannot read token file {self.path}: {exc.strerror}") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    async def change_cursor(self) -> tuple:
        return self._stamp()

    async def changes_since(self, cursor: tuple) -> Changes:
        """One ``stat``: nothing changed, or list again (the file is read whole anyway)."""
        stamp = self._stamp()
        return Changes(stamp, everything=stamp != cursor)

    def raw_entries(self) -> dict[str, dict[str, Any]]:
        """Stored entries without decrypting (listing, backups of ciphertext)."""
        return self._load_doc()["users"]

    # -- writing -----------------------------------------------------------------------

    def _mutate(self, change) -> Any:
        """Read-modify-write under the file-wide lock, re-reading inside it."""
        with file_lock(self._write_lock):
            self._cache_key = None
            doc = self._load_doc()
            users = dict(doc["users"])
            result = change(users)
            payload = json.dumps({"format": FORMAT, "users": users}, indent=1, sort_keys=True)
            atomic_write(self.path, payload.encode())
            self._cache_key = None
            return result

    async def put(self, record: TokenRecord, expected_version: int | None = None) -> TokenRecord:
        def change(users: dict[str, Any]) -> TokenRecord:
            current = users.get(record.user_id)
            current_version = int(current.get("version", 0)) if isinstance(current, dict) else 0
            if expected_version is not None and current_version != expected_version:
                raise StaleWrite(
                    f"user {record.user_id!r} was changed by someone else (stored version "
                    f"{current_version}, expected {expected_version}); the newer token was kept")
            now = time.time()
            stored = record.evolve(version=current_version + 1, source=self.name,
                                   updated_at=now, created_at=record.created_at or now)
            users[record.user_id] = self._encode(stored)
            return stored

        return self._mutate(change)

    gate_timeout = 5.0  # seconds a refresh waits for a restore or key rotation before giving up, unspent

    async def lock_row(self, user_id: str) -> None:
        """Inside ``locked(user)``, before a refresh spends the token: take the gate shared, so no
        restore or key rotation can hold the file when the save comes. Raises ``StorageError``
        (nothing spent) if one holds it for over ``gate_timeout``."""
        if user_id in self._gate_fds:
            return
        fd = await take_lock(self._gate, shared=True, timeout=self.gate_timeout)
        if fd is None:
            raise StorageError(f"token file {self.path} is being rewritten by a restore or a key rotation "
                               f"for over {self.gate_timeout:g}s; nothing was refreshed",
                               hint="retry when it ends")
        self._gate_fds[user_id] = fd

    @contextlib.asynccontextmanager
    async def _rewriting(self) -> AsyncIterator[None]:
        """The gate, exclusively, around a long rewrite: it waits for refreshes in flight to save."""
        fd = await take_lock(self._gate)
        try:
            yield
        finally:
            os.close(fd)

    async def put_many(self, records: list[TokenRecord], expected: dict[str, int] | None = None,
                       authors: dict | None = None, audit: BulkAudit | None = None) -> list[str]:
        """Bulk upsert in one rewrite (imports and restores); returns the users written.

        With ``expected``, a user is written only while its stored version still equals
        ``expected[user]`` (0: not stored), checked under the write lock: a refresh that
        landed in between is kept. ``authors`` (created/updated by) has no place in this file.
        ``audit``: one event per user written, appended right after the rewrite.
        """
        def change(users: dict[str, Any]) -> list[str]:
            now = time.time()
            written = []
            for record in records:
                current = users.get(record.user_id)
                version = int(current.get("version", 0)) if isinstance(current, dict) else 0
                if expected is not None and version != expected.get(record.user_id, 0):
                    continue
                users[record.user_id] = self._encode(record.evolve(
                    version=version + 1, updated_at=record.updated_at or now,
                    created_at=record.created_at or now))
                written.append(record.user_id)
            return written

        async with self._rewriting():
            written = self._mutate(change)
        if audit is not None:
            await self.append_audit_many(audit.events(written))
        return written

    async def rotate_keys(self, *, batch: int = 500, progress=None, on_batch=None) -> RotationReport:
        """Re-encrypt every user's tokens to the first key, in one atomic rewrite (so ``batch``
        and ``progress`` do not apply; ``on_batch`` hears every user once it is done). A user
        whose tokens no configured key opens is left exactly as it is, and reported."""
        if not self.keyring.enabled:
            raise NoKeyConfigured("rotate-key needs CLAUDE_TOKEN_ENCRYPTION_KEY",
                                  hint="set it to NEW_KEY,OLD_KEY and run rotate-key again")
        report = RotationReport(self.keyring.primary_id)

        def change(users: dict[str, Any]) -> RotationReport:
            for uid, entry in users.items():
                values = {k: entry.get(k) for k in _SECRET_FIELDS} if isinstance(entry, dict) else {}
                stale = {k: v for k, v in values.items() if v and self.keyring.needs_rotation(v)}
                if not stale:
                    report.current += 1
                    continue
                try:
                    fresh = {k: self.keyring.encrypt(self.keyring.decrypt(v, uid), uid) for k, v in stale.items()}
                except CryptoError:
                    kid = next((self.keyring.value_key_id(v) for v in stale.values()
                                if self.keyring.value_key_id(v)), None)
                    report.unreadable[kid or "unreadable"] += 1
                    continue
                users[uid] = {**entry, **fresh}
                report.rotated += 1
            still_used = {self.keyring.value_key_id(v) for e in users.values() if isinstance(e, dict)
                          for v in (e.get(k) for k in _SECRET_FIELDS) if v}
            report.retired = [kid for kid in self.keyring.key_ids[1:] if kid not in still_used]
            return report

        async with self._rewriting():
            self._mutate(change)
        report.pending_rotated = self._rotate_pending()
        if on_batch is not None:
            done = on_batch([r.user_id for r in await self.list()])
            if hasattr(done, "__await__"):
                await done
        return report

    def _rotate_pending(self) -> int:
        """Re-encrypt open logins' verifiers to the first key. Each file is claimed by a rename
        first, as ``take_pending`` claims it, so a login taken meanwhile is never revived."""
        rotated = 0
        for path, raw in self._pending_files():
            try:
                verifier = json.loads(raw).get("verifier")
            except (ValueError, AttributeError):
                continue
            if not self.keyring.needs_rotation(verifier):
                continue
            try:
                pending = self._decode_pending(raw)
            except CryptoError:
                pending = None
            if pending is None:
                continue  # unreadable ones expire and are swept; they open nothing
            claimed = path.with_suffix(f".rotating-{os.getpid()}-{os.urandom(3).hex()}")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # taken by a callback meanwhile
            try:
                atomic_write(path, self._encode_pending(pending))
            except BaseException:
                os.rename(claimed, path)
                raise
            claimed.unlink()
            rotated += 1
        return rotated

    async def delete(self, user_id: str) -> bool:
        if user_id not in self._load_doc()["users"]:
            return False  # nothing to remove: do not create or rewrite the file
        return self._mutate(lambda users: users.pop(user_id, None) is not None)

    async def touch(self, user_id: str, when: float) -> None:
        def change(users: dict[str, Any]) -> None:
            if isinstance(users.get(user_id), dict):
                users[user_id] = {**users[user_id], "last_used": when}

        if user_id in self._load_doc()["users"]:
            self._mutate(change)

    async def health(self) -> TierHealth:
        try:
            doc = self._load_doc()
        except StorageError as exc:
            return TierHealth(self.name, DOWN, str(exc), writable=True)
        return TierHealth(self.name, UP, f"{self.path} ({len(doc['users'])} users)", writable=True)

    @contextlib.asynccontextmanager
    async def locked(self, user_id: str) -> AsyncIterator[None]:
        async with async_file_lock(self.lock_dir / f"{_digest(user_id)}.lock"):
            self._cache_key = None  # re-read after taking the lock
            try:
                yield
            finally:
                fd = self._gate_fds.pop(user_id, None)  # taken by lock_row before a refresh
                if fd is not None:
                    os.close(fd)

    # -- pending logins ----------------------------------------------------------------

    def _pending_path(self, state: str) -> Path:
        return self.pending_dir / f"{_digest(state)}.json"

    def _encode_pending(self, pending: PendingLogin) -> bytes:
        data = pending.to_dict()
        if self.keyring.enabled:
            data["verifier"] = self.keyring.encrypt(pending.verifier, pending.state)
        return json.dumps(data).encode()

    def _decode_pending(self, raw: bytes) -> PendingLogin | None:
        """The pending login, or None if unreadable; ``CryptoError`` if sealed under a key we lack."""
        try:
            data = json.loads(raw)
            if is_encrypted(data.get("verifier")):
                data["verifier"] = self.keyring.decrypt(data["verifier"], data["state"])
            return PendingLogin.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _foreign_pending(self, raw: bytes) -> tuple[str | None, str, float]:
        """(key id, user, expires_at) of a pending login this keyring cannot open."""
        data = json.loads(raw)
        expires = data.get("expires_at")
        return (self.keyring.value_key_id(str(data.get("verifier") or "")), str(data.get("user_id")),
                float(expires) if isinstance(expires, (int, float)) else 0.0)

    async def save_pending(self, pending: PendingLogin) -> None:
        ensure_private_dir(self.path.parent)
        ensure_private_dir(self.pending_dir)
        atomic_write(self._pending_path(pending.state), self._encode_pending(pending))
        sweep_temp_files(self.path)

    async def take_pending(self, state: str) -> PendingLogin | None:
        path = self._pending_path(state)
        claimed = path.with_suffix(f".taken-{os.getpid()}-{os.urandom(3).hex()}")
        try:
            os.rename(path, claimed)  # atomic: exactly one taker wins
        except FileNotFoundError:
            return None
        try:
            raw = claimed.read_bytes()
            pending = self._decode_pending(raw)
        except CryptoError:  # another key's login: leave it for the process that has the key
            os.rename(claimed, path)
            kid, user, _ = self._foreign_pending(raw)
            raise foreign_pending_error(kid, user) from None
        except BaseException:
            with contextlib.suppress(OSError):
                claimed.unlink()
            raise
        with contextlib.suppress(OSError):
            claimed.unlink()
        if pending is None or pending.state != state:
            return None
        return pending

    def _pending_files(self) -> list[tuple[Path, bytes]]:
        if not self.pending_dir.is_dir():
            return []
        out = []
        for path in self.pending_dir.glob("*.json"):
            with contextlib.suppress(OSError):  # taken meanwhile
                out.append((path, path.read_bytes()))
        return out

    def _all_pending(self, now: float) -> list[tuple[Path, PendingLogin | None]]:
        """Every pending login (None: unreadable). One sealed under a key we lack is skipped
        with a warning, and listed as unreadable once it has expired, so it is swept then."""
        out: list[tuple[Path, PendingLogin | None]] = []
        for path, raw in self._pending_files():
            try:
                out.append((path, self._decode_pending(raw)))
            except CryptoError:
                kid, user, expires = self._foreign_pending(raw)
                warn_foreign_pending(str(self.pending_dir), kid, user)
                if expires <= now:
                    out.append((path, None))
        return out

    async def newest_pending(self, user_id: str | None = None) -> PendingLogin | None:
        now = time.time()
        live = [p for _, p in self._all_pending(now)
                if p is not None and not p.expired(now) and (user_id is None or p.user_id == user_id)]
        return max(live, key=lambda p: p.created_at, default=None)

    async def sweep_pending(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        removed = 0
        for path, pending in self._all_pending(now):
            if pending is None or pending.expired(now):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    # -- audit -------------------------------------------------------------------------

    audit_lost = 0  # audit lines a full (or read-only) disk refused: counted, never fatal

    def _audit_refused(self, count: int, exc: OSError) -> None:
        self.audit_lost += count
        log.warning("audit log %s: %d lines not written (%s); %d lost so far", self.audit_path, count,
                    exc.strerror, self.audit_lost)

    async def append_audit(self, event: AuditEvent) -> None:
        ensure_private_dir(self.audit_path.parent)
        line = (json.dumps(event.to_dict(), sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.audit_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)  # one write of a short line with O_APPEND: not interleaved
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in FULL:
                raise
            self._audit_refused(1, exc)

    async def append_audit_many(self, events: list[AuditEvent]) -> None:
        """Many events (a restore's) in one append."""
        if not events:
            return
        ensure_private_dir(self.audit_path.parent)
        data = "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in events).encode()
        try:
            fd = os.open(self.audit_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in FULL:
                raise
            self._audit_refused(len(events), exc)

    async def audit_trail(self, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        try:
            lines = self.audit_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        events: list[AuditEvent] = []
        for line in reversed(lines):
            try:
                event = AuditEvent.from_dict(json.loads(line))
            except (ValueError, TypeError):
                continue
            if user_id is None or event.user_id == user_id:
                events.append(event)
                if len(events) >= limit:
                    break
        return events


def _seed_expiry(value: Any) -> Any:
    try:
        return parse_expires_at(value)
    except (TypeError, ValueError):
        return value  # left as it is: _decode names the field when the user is read


def _from_seed(data: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``{accessToken, refreshToken, expiresAt}`` as one of our entries."""
    scopes = data.get("scopes") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    return {
        "access_token": data.get("accessToken") or "",
        "refresh_token": data.get("refreshToken"),
        "expires_at": _seed_expiry(data.get("expiresAt") or 0),
        "scopes": list(scopes),
        "subscription_type": data.get("subscriptionType"),
        "version": 0,
    }
