"""Backups of every user's tokens, restores that never roll a token back, imports and exports.

The portable backup file::

    "CCBACKUP" | format version (u16, big-endian) | header length (u32) | header (JSON) | body

The header names the KDF with its parameters and salt (scrypt, n >= 2**17, r = 8, p = 1 by
default; Argon2id >= 64 MiB is read and written too), the AES-256-GCM nonce and a passphrase
check. Every byte before the body is the body's associated data, so a changed header fails
authentication just as a changed body does. The body is JSON, column by column: every user's
record with its audit fields (created/updated at and by, last use, refresh counts and errors),
tokens in the clear *inside* the encryption, so the file restores under any store key.

Restore decides what "newer" means by ``updated_at``, the time a row last changed (a login, a
refresh, a failure note). A restore writes the backup's ``updated_at`` back, so restoring the
same file twice changes nothing. Each user in the backup is:

* ``new``: not stored here: added (every mode);
* ``older``: the stored row is older than the backup's: replaced (``newer``, ``always``);
* ``newer``: the stored row is newer: kept unless ``--overwrite always``;
* ``conflict``: same ``updated_at`` but another expiry, or another Claude account: kept
  unless ``--overwrite always``;
* ``same``: nothing to do.

Whatever the mode, a row that changes after the plan was made (a refresh landing during the
restore) is never overwritten: every write is a compare-and-swap on the version the plan saw.
Writes go in batches, each one transaction (PostgreSQL: COPY into a temporary table, then one
upsert) or one atomic rewrite (file tier). Nothing here prints; faces get progress callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import hashlib
import hmac
import json
import os
import struct
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .errors import (BackupCorrupt, BackupError, NotLoggedIn, StaleWrite, StorageError,
                     UsageError, WrongPassphrase)
from .store.base import AuditEvent
from .store.fsutil import atomic_write
from .tokens import TokenRecord, parse_expires_at

if TYPE_CHECKING:  # pragma: no cover
    from .service import AuthService

MAGIC = b"CCBACKUP"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sHI")
MAX_HEADER = 64 * 1024
PAYLOAD_KIND = "claude-console-backup"

SCRYPT = {"name": "scrypt", "n": 2 ** 17, "r": 8, "p": 1}
ARGON2ID = {"name": "argon2id", "memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
KDFS = {"scrypt": SCRYPT, "argon2id": ARGON2ID}
# Refused unless allow_weak_kdf (tests only): a backup is only as strong as this.
_MIN = {"scrypt": {"n": 2 ** 17, "r": 8, "p": 1}, "argon2id": {"memory_kib": 64 * 1024, "iterations": 3, "lanes": 1}}
MAX_KDF_MEMORY = 1024 * 1024 * 1024  # a hostile header must not make us allocate more
MIN_PASSPHRASE = 8

OVERWRITE_MODES = ("newer", "always", "never")
BATCH = 5000   # users per transaction when restoring into PostgreSQL
IN_FLIGHT = 2  # batches written at once (each its own transaction and connection)
# A TokenRecord's fields as the backup stores them (source says where it was read: not kept).
RECORD_FIELDS = tuple(f.name for f in fields(TokenRecord) if f.name != "source")
AUTHOR_FIELDS = ("created_by", "updated_by")
PAYLOAD_FIELDS = RECORD_FIELDS + AUTHOR_FIELDS
_NUMBERS = ("created_at", "updated_at", "last_used", "last_refresh_at", "last_refresh_error_at")
_SAME_TIME = 0.0005   # seconds: timestamps round-trip through PostgreSQL at microseconds

CLAUDE_CODE_CREDENTIALS = "~/.claude/.credentials.json"
SQL_TABLE = '"LiteLLM_ClaudeOAuthTokens"'

Progress = Callable[[str, int, int], None]   # (stage, done, total)


def _record_defaults() -> dict[str, Any]:
    blank = TokenRecord(user_id="", access_token="")
    return {name: getattr(blank, name) for name in RECORD_FIELDS}


def _noop(stage: str, done: int, total: int) -> None:
    pass


def size_text(n: int) -> str:
    """``50.3 MB``: a file size for people."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


def users_text(n: int) -> str:
    """``1 user``, ``2 users``: for the faces' one-line results."""
    return f"{n} user" if n == 1 else f"{n} users"


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic GC while building or parsing 100 000 rows: it only finds no garbage, slowly."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str, where: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise BackupCorrupt(f"{where} is damaged: its header field {what} is not base64",
                            hint="use another copy of the backup") from None


# -- key derivation ------------------------------------------------------------------------

def check_kdf(kdf: dict[str, Any], where: str, *, allow_weak: bool = False) -> dict[str, Any]:
    """The header's KDF parameters, checked: known, not below the minimum, not absurdly large."""
    if not isinstance(kdf, dict) or kdf.get("name") not in _MIN:
        name = kdf.get("name") if isinstance(kdf, dict) else None
        raise BackupError(f"{where} uses the key derivation {name!r}, which this console does not know",
                          hint="restore it with the claude-console version that wrote it")
    name = kdf["name"]
    try:
        params = {k: int(kdf[k]) for k in _MIN[name]}
    except (KeyError, TypeError, ValueError):
        raise BackupCorrupt(f"{where} is damaged: its {name} parameters are incomplete",
                            hint="use another copy of the backup") from None
    if any(v < 1 for v in params.values()):
        raise BackupCorrupt(f"{where} is damaged: its {name} parameters are not positive")
    if name == "scrypt":
        n, r = params["n"], params["r"]
        if n & (n - 1):
            raise BackupCorrupt(f"{where} is damaged: scrypt n={n} is not a power of two")
        memory = 128 * r * n * params["p"]
    else:
        memory = params["memory_kib"] * 1024
        if params["iterations"] > 64 or params["lanes"] > 64:
            memory = MAX_KDF_MEMORY + 1
    if memory > MAX_KDF_MEMORY:
        raise BackupError(f"{where} asks for a key derivation above the 1 GiB this console allows "
                          f"({_describe_kdf({'name': name, **params})})",
                          hint="it was not written by claude-console; do not trust it")
    weak = [k for k, floor in _MIN[name].items() if params[k] < floor]
    if weak and not allow_weak:
        raise BackupError(f"{where} uses key derivation parameters below the minimum "
                          f"({_describe_kdf({'name': name, **params})}; minimum "
                          f"{_describe_kdf({'name': name, **_MIN[name]})})",
                          hint="it was not written by this console's backup; do not trust it")
    return {"name": name, **params}


def _describe_kdf(kdf: dict[str, Any]) -> str:
    if kdf["name"] == "scrypt":
        return f"scrypt n=2^{int(kdf['n']).bit_length() - 1} r={kdf['r']} p={kdf['p']}"
    return f"argon2id {kdf['memory_kib'] // 1024} MiB t={kdf['iterations']} p={kdf['lanes']}"


def derive_key(passphrase: str, kdf: dict[str, Any], salt: bytes) -> bytes:
    """64 bytes: the AES-256 key, then 32 bytes whose hash is the passphrase check."""
    secret = passphrase.encode("utf-8")
    if kdf["name"] == "scrypt":
        n, r, p = kdf["n"], kdf["r"], kdf["p"]
        return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=64,
                              maxmem=128 * r * n * p + 4 * 1024 * 1024)
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(salt=salt, length=64, iterations=kdf["iterations"], lanes=kdf["lanes"],
                    memory_cost=kdf["memory_kib"]).derive(secret)


def _check_value(derived: bytes) -> bytes:
    return hashlib.sha256(b"claude-console backup passphrase check" + derived[32:]).digest()[:16]


# -- sealing and opening the file ------------------------------------------------------------

def seal(payload: bytes, passphrase: str, *, kdf: dict[str, Any] | None = None,
         info: dict[str, Any] | None = None, key: tuple[bytes, bytes] | None = None) -> bytes:
    """Encrypt ``payload`` into a backup file's bytes (header + AES-256-GCM body).

    ``key``: ``(salt, derive_key(passphrase, kdf, salt))`` computed beforehand (a backup
    derives it while it reads the store)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    params = dict(kdf or SCRYPT)
    salt, derived = key if key is not None else (os.urandom(16), None)
    if derived is None:
        derived = derive_key(passphrase, params, salt)
    nonce = os.urandom(12)
    header = {"format": FORMAT_VERSION, "kdf": {**params, "salt": _b64(salt)}, "cipher": "AES-256-GCM",
              "nonce": _b64(nonce), "check": _b64(_check_value(derived)), **(info or {})}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head
    return prefix + AESGCM(derived[:32]).encrypt(nonce, payload, prefix)


def read_header(data: bytes, where: str) -> tuple[dict[str, Any], bytes, bytes]:
    """``(header, associated data, body)`` of a backup file's bytes, or one clear error."""
    if len(data) < _PREFIX.size or not data.startswith(MAGIC):
        head = data[:64].lstrip()
        if head.startswith(b"--") or head.upper().startswith((b"BEGIN", b"SET", b"\\SET")):
            raise BackupError(f"{where} is an SQL backup, which PostgreSQL restores itself",
                              hint=f'run: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f {where}')
        if MAGIC.startswith(data[:len(MAGIC)]) and data:
            raise BackupCorrupt(f"{where} is truncated (it ends inside the header); nothing was restored",
                                hint="use another copy of the backup")
        raise BackupError(f"{where} is not a claude-console backup",
                          hint="give the file that `claude-console backup` wrote")
    _, version, length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BackupError(f"{where} is backup format {version}; this console reads format {FORMAT_VERSION}",
                          hint="restore it with a newer claude-console" if version > FORMAT_VERSION else None)
    if length > MAX_HEADER:
        raise BackupCorrupt(f"{where} is damaged: its header length is implausible ({length} bytes)",
                            hint="use another copy of the backup")
    end = _PREFIX.size + length
    if len(data) < end + 16:
        raise BackupCorrupt(f"{where} is truncated ({len(data)} bytes); nothing was restored",
                            hint="use another copy of the backup")
    try:
        header = json.loads(data[_PREFIX.size:end])
    except (ValueError, UnicodeDecodeError):
        raise BackupCorrupt(f"{where} is damaged: its header is not readable; nothing was restored",
                            hint="use another copy of the backup") from None
    if not isinstance(header, dict) or header.get("cipher") != "AES-256-GCM":
        raise BackupCorrupt(f"{where} is damaged: its header does not name AES-256-GCM",
                            hint="use another copy of the backup")
    return header, data[:end], data[end:]


def open_sealed(data: bytes, passphrase: str, where: str, *, allow_weak_kdf: bool = False
                ) -> tuple[dict[str, Any], bytes]:
    """Check and decrypt a backup's bytes: ``(header, payload)``. Raises one clear error."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, aad, body = read_header(data, where)
    kdf = check_kdf(header.get("kdf"), where, allow_weak=allow_weak_kdf)
    salt = _unb64(header["kdf"].get("salt", ""), "kdf.salt", where)
    nonce = _unb64(header.get("nonce", ""), "nonce", where)
    check = _unb64(header.get("check", ""), "check", where)
    if len(nonce) != 12 or len(salt) < 8:
        raise BackupCorrupt(f"{where} is damaged: its nonce or salt has the wrong size",
                            hint="use another copy of the backup")
    derived = derive_key(passphrase, kdf, salt)
    if not hmac.compare_digest(_check_value(derived), check):
        raise WrongPassphrase(f"wrong passphrase for {where} (or its header was changed); nothing was restored",
                              hint="try again with the passphrase given when the backup was made")
    try:
        payload = AESGCM(derived[:32]).decrypt(nonce, body, aad)
    except InvalidTag:
        raise BackupCorrupt(f"{where} was changed or is truncated (authentication failed); "
                            "nothing was restored", hint="use another copy of the backup") from None
    return header, payload


# -- what a backup holds ------------------------------------------------------------------

@dataclass
class BackupContents:
    """A decrypted backup: the records, who created/updated them, and where they came from."""

    path: str
    header: dict[str, Any]
    created_at: float
    source: str
    records: list[TokenRecord]
    authors: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def users(self) -> list[str]:
        return [r.user_id for r in self.records]


@dataclass
class BackupSummary:
    path: str
    users: int
    format: str
    bytes: int
    kdf: str = ""
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)   # asked for with --user, not stored

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "users": self.users, "format": self.format, "bytes": self.bytes,
                "kdf": self.kdf, "seconds": round(self.seconds, 3), "missing": self.missing}


def _encode_payload(columns: dict[str, list], source: str, created_at: float) -> bytes:
    doc = {"kind": PAYLOAD_KIND, "created_at": created_at, "source": source,
           "count": len(columns["user_id"]), "fields": list(columns), "columns": list(columns.values())}
    with _bulk():
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _decode_payload(payload: bytes, where: str, header: dict[str, Any]) -> BackupContents:
    def damaged(why: str) -> BackupCorrupt:
        return BackupCorrupt(f"{where} decrypted but its contents are damaged ({why}); nothing was restored",
                             hint="use another copy of the backup")

    with _bulk():
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise damaged("not JSON") from None
        if not isinstance(doc, dict) or doc.get("kind") != PAYLOAD_KIND:
            raise damaged("not a token list")
        names, cols = doc.get("fields"), doc.get("columns")
        if not isinstance(names, list) or not isinstance(cols, list) or len(names) != len(cols) \
                or "user_id" not in names or "access_token" not in names:
            raise damaged("its columns do not match")
        count = len(cols[names.index("user_id")])
        if any(not isinstance(c, list) or len(c) != count for c in cols):
            raise damaged("its columns have different lengths")
        by_name = dict(zip(names, cols))
        uids, access = by_name["user_id"], by_name["access_token"]
        for row, (uid, token) in enumerate(zip(uids, access)):
            if not isinstance(uid, str) or not uid or not isinstance(token, str) or not token:
                raise damaged(f"row {row + 1} has no user or no access token")
        if len(set(uids)) != count:
            raise damaged("a user appears twice")
        try:
            by_name["expires_at"] = [float(x or 0) for x in by_name.get("expires_at") or [0] * count]
            by_name["scopes"] = [[str(s) for s in x or ()] for x in by_name.get("scopes") or [[]] * count]
            for name in _NUMBERS:
                if name in by_name:
                    by_name[name] = [None if x is None else float(x) for x in by_name[name]]
        except (TypeError, ValueError):
            raise damaged("a time or a list of scopes is malformed") from None
        defaults = _record_defaults()
        columns = [by_name.get(name) or [defaults[name]] * count for name in RECORD_FIELDS]
        new, keys = object.__new__, RECORD_FIELDS + ("source",)
        records: list[TokenRecord] = []
        for row in zip(*columns):   # the fields are checked above: no __init__ per row
            record = new(TokenRecord)
            record.__dict__.update(zip(keys, row + ("",)))
            records.append(record)
        created, updated = by_name.get("created_by"), by_name.get("updated_by")
        authors: dict[str, tuple[str | None, str | None]] = {}
        if created is not None or updated is not None:
            authors = dict(zip(uids, zip(created or [None] * count, updated or [None] * count)))
    return BackupContents(path=where, header=header, created_at=float(doc.get("created_at") or 0),
                          source=str(doc.get("source") or "?"), records=records, authors=authors)


# -- backup --------------------------------------------------------------------------------

def check_target(path: str | Path, force: bool) -> Path:
    """The file a backup or an export will write: refused if it is a folder, or exists without force."""
    target = Path(os.path.expanduser(str(path)))
    if target.is_dir():
        raise UsageError(f"{target} is a folder", hint="give a file name, e.g. tokens.ccbackup")
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist", hint=f"create it: mkdir -p {target.parent}")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists and was left as it is",
                         hint="choose another name, or pass --force to replace it")
    return target


def _write_private(target: Path, data: bytes) -> None:
    try:
        atomic_write(target, data, private_dir=False)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}",
                           hint="check the folder and its free space") from None


def _decrypt_columns(keyring, users: list[str], values: list[str | None]) -> list[str | None]:
    return keyring.decrypt_many(values, users)


async def _read_rows(service: "AuthService", users: list[str] | None) -> tuple[dict[str, list], str]:
    """Every stored user as columns (tokens in the clear), primary tier first; env tokens left out."""
    store = service.store
    primary = store.primary
    wanted = set(users) if users else None
    columns: dict[str, list] = {name: [] for name in PAYLOAD_FIELDS}
    seen: set[str] = set()
    export = getattr(primary, "export_rows", None)
    if export is not None:  # PostgreSQL: one query, rows as columns, no TokenRecord per row
        with _bulk():
            names, rows = await export(sorted(wanted) if wanted else None)
            raw = dict(zip(names, map(list, zip(*rows)))) if rows else {n: [] for n in names}
            uids = raw["user_id"]
            raw["access_token"] = _decrypt_columns(primary.keyring, uids, raw["access_token"])
            raw["refresh_token"] = _decrypt_columns(primary.keyring, uids, raw["refresh_token"])
            raw["scopes"] = [s if type(s) is list else list(s or ()) for s in raw["scopes"]]
            for name in PAYLOAD_FIELDS:
                columns[name] = raw.get(name) or [None] * len(uids)
            seen.update(uids)
    others = [t for t in store.backends if t.writable and (export is None or t is not primary)]
    for tier in others:
        for record in sorted(await tier.list(secrets=True), key=lambda r: r.user_id):
            if record.user_id in seen or record.source == "env" or (wanted and record.user_id not in wanted):
                continue
            seen.add(record.user_id)
            for name in RECORD_FIELDS:
                value = getattr(record, name)
                columns[name].append(list(value) if name == "scopes" else value)
            for name in AUTHOR_FIELDS:
                columns[name].append(None)
    return columns, primary.name


async def backup(service: "AuthService", path: str | Path, passphrase: str | None, *,
                 users: list[str] | None = None, fmt: str = "portable", force: bool = False,
                 kdf: dict[str, Any] | None = None, progress: Progress | None = None) -> BackupSummary:
    """Write every user's tokens (or ``users``) to ``path``, 0600, atomically."""
    progress = progress or _noop
    started = time.monotonic()
    target = check_target(path, force)
    if fmt == "sql":
        return await _backup_sql(service, target, users, progress, started)
    if fmt != "portable":
        raise UsageError(f"unknown backup format {fmt!r}", hint="use --format portable or --format sql")
    if not passphrase:
        raise UsageError("a backup needs a passphrase", hint="type one at the prompt, or use --passphrase-env VAR")
    params = dict(kdf or SCRYPT)
    salt = os.urandom(16)
    # The KDF runs in a thread (it releases the GIL) while this one reads and encodes the rows.
    deriving = asyncio.ensure_future(asyncio.to_thread(derive_key, passphrase, params, salt))
    try:
        progress("read", 0, 0)
        columns, source = await _read_rows(service, users)
        count = len(columns["user_id"])
        missing = sorted(set(users or ()) - set(columns["user_id"]))
        progress("read", count, count)
        now = time.time()
        payload = _encode_payload(columns, source, now)
        progress("encrypt", 0, count)
        derived = await deriving
    finally:
        if not deriving.done():
            deriving.cancel()
    data = await asyncio.to_thread(seal, payload, passphrase, kdf=params, key=(salt, derived),
                                   info={"created_at": round(now, 3), "producer": "claude-console"})
    await asyncio.to_thread(_write_private, target, data)
    progress("encrypt", count, count)
    await service._audit("backup", "*", True, f"{count} users to {target.name} (portable, "
                         f"{_describe_kdf(params)})")
    return BackupSummary(str(target), count, "portable", len(data), _describe_kdf(params),
                         time.monotonic() - started, missing)


async def _backup_sql(service: "AuthService", target: Path, users: list[str] | None,
                      progress: Progress, started: float) -> BackupSummary:
    primary = service.store.primary
    dump = getattr(primary, "dump_table", None)
    if primary.name != "postgres" or dump is None:
        raise UsageError("--format sql needs the PostgreSQL store, and this console stores tokens in the "
                         f"{primary.name} tier", hint="set DATABASE_URL, or make a portable backup "
                                                      "(without --format sql)")
    progress("read", 0, 0)
    columns, data, count = await dump(users=sorted(set(users)) if users else None,
                                      exclude=("refresh_claimed_until", "refresh_claimed_by"))
    key_ids = getattr(primary.keyring, "key_ids", [])
    text = sql_script(columns, data, count, key_ids)
    await asyncio.to_thread(_write_private, target, text)
    progress("read", count, count)
    await service._audit("backup", "*", True, f"{count} users to {target.name} (sql, still encrypted)")
    return BackupSummary(str(target), count, "sql", len(text), "", time.monotonic() - started)


def sql_script(columns: list[tuple[str, str]], copy_text: bytes, count: int, key_ids: list[str]) -> bytes:
    """A ``psql -f`` script that upserts the rows, keeping any stored row that is newer."""
    names = [c for c, _ in columns]
    quoted = ", ".join(f'"{c}"' for c in names)
    temp = "claude_console_restore"
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in names if c not in ("token_id", "user_id", "version"))
    version = ', "version" = t."version" + 1' if "version" in names else ""
    newer = 'WHERE EXCLUDED."updated_at" > t."updated_at" OR t."updated_at" IS NULL' \
        if "updated_at" in names else ""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    keys = ", ".join(key_ids) or "none configured"
    head = f"""-- claude-console SQL backup of {SQL_TABLE}: {count} rows, {when}.
-- Tokens are still encrypted under the store's key (key ids: {keys}): the database they are
-- restored into needs the same CLAUDE_TOKEN_ENCRYPTION_KEY. Schema first (claude-console migrate),
-- then:  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f THIS_FILE
-- A stored row whose updated_at is newer is kept; running this twice changes nothing more.
\\set ON_ERROR_STOP on
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET datestyle = 'ISO, YMD';
BEGIN;
CREATE TEMP TABLE {temp} ({", ".join(f'"{c}" {t}' for c, t in columns)}) ON COMMIT DROP;
COPY {temp} ({quoted}) FROM stdin;
"""
    tail = f"""\\.
INSERT INTO "LiteLLM_UserTable" AS u (user_id, claude_oauth_enabled, claude_oauth_connected_at)
    SELECT user_id, TRUE, now() FROM {temp}
    ON CONFLICT (user_id) DO UPDATE SET claude_oauth_enabled = TRUE,
        claude_oauth_connected_at = COALESCE(u.claude_oauth_connected_at, now())
    WHERE u.claude_oauth_enabled IS NOT TRUE OR u.claude_oauth_connected_at IS NULL;
INSERT INTO {SQL_TABLE} AS t ({quoted})
    SELECT {quoted} FROM {temp}
    ON CONFLICT (user_id) DO UPDATE SET {sets}{version}
    {newer};
COMMIT;
"""
    return head.encode() + copy_text + tail.encode()


# -- restore -------------------------------------------------------------------------------

def check_source(path: str | Path) -> Path:
    """The backup file a restore will read: it must exist and be a file."""
    source = Path(os.path.expanduser(str(path)))
    if source.is_dir():
        raise UsageError(f"{path} is a folder", hint="give the path of a backup file")
    if not source.exists():
        raise UsageError(f"{path} does not exist", hint="give the path of a backup file")
    return source


async def open_backup(path: str | Path, passphrase: str, *, allow_weak_kdf: bool = False,
                      progress: Progress | None = None) -> BackupContents:
    """Read, check and decrypt a backup file; nothing is written anywhere."""
    progress = progress or _noop
    source = check_source(path)
    where = str(path)
    try:
        data = await asyncio.to_thread(source.read_bytes)
    except OSError as exc:
        raise StorageError(f"cannot read {where}: {exc.strerror or exc}") from None
    progress("decrypt", 0, 0)
    header, payload = await asyncio.to_thread(open_sealed, data, passphrase, where,
                                              allow_weak_kdf=allow_weak_kdf)
    contents = _decode_payload(payload, where, header)
    progress("decrypt", len(contents.records), len(contents.records))
    return contents


@dataclass
class Change:
    """One user of a restore: what the backup holds against what is stored, and what happens."""

    user_id: str
    kind: str                       # new, older, newer, conflict, same
    action: str                     # add, replace, keep, none
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
        out = {k: 0 for k in ("new", "older", "newer", "conflict", "same")}
        for change in self.changes:
            out[change.kind] += 1
        return out

    @property
    def to_write(self) -> list[Change]:
        return [c for c in self.changes if c.writes]

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


async def plan_restore(service: "AuthService", contents: BackupContents, *, users: list[str] | None = None,
                       overwrite: str = "newer") -> RestorePlan:
    """What a restore would change, against the primary tier as it is now (nothing is written)."""
    if overwrite not in OVERWRITE_MODES:
        raise UsageError(f"--overwrite {overwrite!r} is not one of {', '.join(OVERWRITE_MODES)}")
    primary = service.store.primary
    if not hasattr(primary, "put_many"):
        raise StorageError(f"the {primary.name} tier cannot take a restore", hint="use the file or PostgreSQL store")
    chosen = contents.records
    missing: list[str] = []
    if users:
        wanted = set(users)
        chosen = [r for r in contents.records if r.user_id in wanted]
        missing = sorted(wanted - {r.user_id for r in chosen})
    with _bulk():
        stored = {r.user_id: r for r in await primary.list(secrets=False)}
        changes = [classify(r, stored.get(r.user_id), overwrite) for r in chosen]
    changes.sort(key=lambda c: c.user_id)
    return RestorePlan(path=contents.path, overwrite=overwrite, changes=changes,
                       records={r.user_id: r for r in chosen}, authors=contents.authors, missing=missing,
                       backup_created_at=contents.created_at, tier=primary.name)


@dataclass
class RestoreResult:
    written: list[str] = field(default_factory=list)
    changed_meanwhile: list[str] = field(default_factory=list)  # kept: a newer write landed first
    kept: int = 0
    unchanged: int = 0
    batches: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"written": len(self.written), "changed_meanwhile": self.changed_meanwhile, "kept": self.kept,
                "unchanged": self.unchanged, "batches": self.batches, "seconds": round(self.seconds, 3)}


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def apply_restore(service: "AuthService", plan: RestorePlan, *, batch_size: int | None = None,
                        progress: Progress | None = None) -> RestoreResult:
    """Write the plan in batches, each one transaction; a row changed since the plan is kept."""
    progress = progress or _noop
    started = time.monotonic()
    store = service.store
    todo = plan.to_write
    result = RestoreResult(kept=sum(1 for c in plan.changes if c.action == "keep"),
                           unchanged=sum(1 for c in plan.changes if c.action == "none"))
    one_file = store.primary.name == "file"   # one rewrite of the whole file is its cheapest batch
    size = batch_size or (len(todo) or 1 if one_file else BATCH)
    where = Path(plan.path).name
    done = 0

    async def write(batch: list[Change]) -> None:
        nonlocal done
        records = [plan.records[c.user_id] for c in batch]
        expected = {c.user_id: c.stored_version for c in batch}
        authors = {c.user_id: plan.authors[c.user_id] for c in batch if c.user_id in plan.authors}
        written = await store.put_many(records, expected, authors=authors)
        got = set(written)
        result.written.extend(written)
        result.changed_meanwhile.extend(c.user_id for c in batch if c.user_id not in got)
        for uid in written:
            service.forget(uid)
        kinds = {c.user_id: c.kind for c in batch}
        await store.append_audit_many([
            AuditEvent("restore", uid, True, f"from {where} ({_RESTORE_DETAIL[kinds[uid]]})", service.actor)
            for uid in written])
        result.batches += 1
        done += len(batch)
        progress("write", done, len(todo))

    progress("write", 0, len(todo))
    # IN_FLIGHT batches at once (each its own transaction): one is encrypted here while the
    # database writes another. The file tier takes them one at a time.
    flying: list[asyncio.Future] = []
    with _bulk():
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


# -- import and export --------------------------------------------------------------------

@dataclass
class ImportResult:
    record: TokenRecord
    source: str            # claude-code, env, file
    origin: str            # the path or the variable names
    changed: bool          # False: the stored token was already this one


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", hint=f"give the path of {what}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not JSON, so it is not {what}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a JSON object, so it is not {what}")
    return data


def record_from_token_data(user_id: str, data: dict[str, Any], where: str) -> TokenRecord:
    """``{accessToken, refreshToken, expiresAt, scopes, subscriptionType}`` (or snake_case) as a record."""
    def get(*keys: str) -> Any:
        return next((data[k] for k in keys if data.get(k) not in (None, "")), None)

    access = get("accessToken", "access_token")
    if not isinstance(access, str) or not access:
        raise UsageError(f"{where} has no access token (accessToken)")
    refresh = get("refreshToken", "refresh_token")
    expires = get("expiresAt", "expires_at")
    try:
        expires_at = parse_expires_at(expires) if expires is not None else 0.0
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expiresAt {expires!r} is not a time in seconds or milliseconds") from None
    scopes = get("scopes", "scope") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    subscription = get("subscriptionType", "subscription_type")
    return TokenRecord(user_id=user_id, access_token=access, refresh_token=refresh if isinstance(refresh, str) else None,
                       expires_at=expires_at, scopes=[str(s) for s in scopes],
                       subscription_type=str(subscription) if subscription else None)


def read_import(kind: str, path: str | None, user_id: str, env: dict[str, str] | None = None
                ) -> tuple[TokenRecord, str]:
    """The record an import would store, and where it came from (nothing is written)."""
    if kind == "claude-code":
        source = Path(os.path.expanduser(path or CLAUDE_CODE_CREDENTIALS))
        try:
            data = _load_json(source, "Claude Code's credentials file")
        except UsageError as exc:
            if path is None and not source.exists():
                raise UsageError(f"Claude Code's credentials are not at {source}",
                                 hint="give the path (on macOS they live in the Keychain: security "
                                      "find-generic-password -s 'Claude Code-credentials' -w > creds.json)"
                                 ) from None
            raise exc
        oauth = data.get("claudeAiOauth")
        if not isinstance(oauth, dict):
            raise UsageError(f"{source} has no claudeAiOauth section, so it holds no Claude login",
                             hint="log in with Claude Code first (claude, then /login)")
        return record_from_token_data(user_id, oauth, str(source)), str(source)
    if kind == "env":
        env = os.environ if env is None else env
        access = env.get("CLAUDE_ACCESS_TOKEN")
        if not access and env.get("CLAUDE_CODE_OAUTH_TOKEN"):  # a setup token: long-lived
            from .long_lived import setup_token_record
            return setup_token_record(user_id, env["CLAUDE_CODE_OAUTH_TOKEN"]), "CLAUDE_CODE_OAUTH_TOKEN"
        if not access:
            raise UsageError("CLAUDE_ACCESS_TOKEN is not set, so there is nothing to import",
                             hint="set CLAUDE_ACCESS_TOKEN (and CLAUDE_REFRESH_TOKEN, CLAUDE_EXPIRES_AT)")
        data = {"accessToken": access, "refreshToken": env.get("CLAUDE_REFRESH_TOKEN"),
                "expiresAt": env.get("CLAUDE_EXPIRES_AT") or None}
        return record_from_token_data(user_id, data, "CLAUDE_EXPIRES_AT"), "environment"
    if kind == "file":
        if not path:
            raise UsageError("import file needs the PATH of a token file")
        source = Path(os.path.expanduser(path))
        data = _load_json(source, "a token file ({accessToken, refreshToken, expiresAt})")
        if isinstance(data.get("claudeAiOauth"), dict):
            data = data["claudeAiOauth"]
        elif isinstance(data.get("users"), dict):
            raise UsageError(f"{source} is claude-console's own multi-user token file",
                             hint=f"point CLAUDE_TOKEN_FILE at it, or export one user: "
                                  f"CLAUDE_TOKEN_FILE={source} claude-console export --user U FILE")
        return record_from_token_data(user_id, data, str(source)), str(source)
    raise UsageError(f"unknown import source {kind!r}", hint="use claude-code, env or file")


async def import_tokens(service: "AuthService", kind: str, path: str | None = None,
                        user_id: str | None = None, *, force: bool = False,
                        expires_at: float | None = None) -> ImportResult:
    """Store a token set from Claude Code, the environment or a seed token file for one user."""
    uid = service.user(user_id)
    record, origin = read_import(kind, path, uid)
    if expires_at is not None:  # --expires-at: the operator knows better than the source
        record = record.evolve(expires_at=expires_at)
    async with service.store.locked(uid):
        existing = await service._load_fresh(uid)
        stored = existing if existing is not None and existing.source != "env" else None
        if stored is not None and stored.access_token == record.access_token \
                and stored.refresh_token == record.refresh_token:
            return ImportResult(stored, kind, origin, changed=False)
        if stored is not None and not force and not stored.needs_login \
                and stored.expires_at > record.expires_at:
            raise UsageError(f"user {uid!r} already has a token that expires later than the one in {origin}; "
                             "nothing was changed", hint="pass --force to replace it anyway")
        now = time.time()
        fresh = record.evolve(created_at=stored.created_at if stored else now,
                              refresh_count=stored.refresh_count if stored else 0,
                              last_used=stored.last_used if stored else None)
        try:
            saved = await service._save_tokens(uid, fresh, expected_version=stored.version if stored else 0)
        except StaleWrite as exc:
            raise StaleWrite(f"user {uid!r} changed while importing; nothing was replaced",
                             hint="run the import again") from exc
    service.forget(uid)
    await service._audit("import", uid, True, f"from {kind} ({origin})")
    return ImportResult(saved, kind, origin, changed=True)


def token_file_data(record: TokenRecord) -> dict[str, Any]:
    """One user in the seed's token file format (expiresAt in seconds, as the seed writes it)."""
    data: dict[str, Any] = {"accessToken": record.access_token, "refreshToken": record.refresh_token,
                            "expiresAt": int(record.expires_at), "scopes": list(record.scopes)}
    if record.subscription_type:
        data["subscriptionType"] = record.subscription_type
    return data


async def export_tokens(service: "AuthService", path: str | Path, user_id: str | None = None, *,
                        force: bool = False) -> TokenRecord:
    """Write one user's tokens in the seed's single-user file format, 0600, atomically."""
    uid = service.user(user_id)
    target = check_target(path, force)
    record = await service.get_record(uid)
    if record is None:
        raise NotLoggedIn(f"user {uid!r} is not logged in, so there is nothing to export",
                          hint=f"run: claude-console login --user {uid}")
    text = json.dumps(token_file_data(record), indent=2) + "\n"
    await asyncio.to_thread(_write_private, target, text.encode())
    await service._audit("export", uid, True, f"to {target.name}")
    return record


__all__ = ["ARGON2ID", "BackupContents", "BackupSummary", "Change", "ImportResult", "KDFS", "MIN_PASSPHRASE",
           "OVERWRITE_MODES", "RestorePlan", "RestoreResult", "SCRYPT", "apply_restore", "backup", "check_source",
           "check_target", "classify", "export_tokens", "import_tokens", "open_backup", "open_sealed",
           "plan_restore", "read_import", "seal", "token_file_data", "users_text"]
