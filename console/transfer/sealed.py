"""The sealed backup file: header, key derivation and AES-256-GCM framing.

::

    "CCBACKUP" | format version (u16, big-endian) | header length (u32) | header (JSON) | body

The header names the KDF with its parameters and salt (scrypt, n >= 2**17, r = 8, p = 1 by
default; Argon2id >= 64 MiB is read and written too), the AES-256-GCM nonce and a passphrase
check. Every byte before the body is the body's associated data, so a changed header fails
authentication just as a changed body does. What the body holds is ``payload``'s business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from typing import Any

from ..errors import BackupCorrupt, BackupError, WrongPassphrase

MAGIC = b"CCBACKUP"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sHI")
MAX_HEADER = 64 * 1024

SCRYPT = {"name": "scrypt", "n": 2 ** 17, "r": 8, "p": 1}
ARGON2ID = {"name": "argon2id", "memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
KDFS = {"scrypt": SCRYPT, "argon2id": ARGON2ID}
# Refused unless allow_weak_kdf (tests only): a backup is only as strong as this.
_MIN = {"scrypt": {"n": 2 ** 17, "r": 8, "p": 1}, "argon2id": {"memory_kib": 64 * 1024, "iterations": 3, "lanes": 1}}
MAX_KDF_MEMORY = 1024 * 1024 * 1024  # a hostile header must not make us allocate more
# Nor make us work for minutes: memory x passes at most 2 GiB (argon2id 256 MiB t=8, 1 GiB t=2;
# the defaults are 64 MiB t=3 and scrypt's 128 MiB), at most 16 passes and 64 lanes.
MAX_KDF_WORK = 2 * 1024 * 1024 * 1024
MAX_ITERATIONS, MAX_LANES = 16, 64
MAX_HEADER_DEPTH = 4                 # the header is {"kdf": {...}, ...}: two levels are used
MIN_PASSPHRASE = 8


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
    if not isinstance(kdf, dict) or not kdf.get("name"):
        raise BackupCorrupt(f"{where} is damaged: its header names no key derivation",
                            hint="use another copy of the backup")
    if kdf["name"] not in _MIN:
        raise BackupError(f"{where} uses the key derivation '{_said(kdf['name'])}', which this console "
                          "does not know", hint="restore it with the claude-console version that wrote it")
    name = kdf["name"]
    try:
        params = {k: int(kdf[k]) for k in _MIN[name]}
    except (KeyError, TypeError, ValueError, OverflowError):
        raise BackupCorrupt(f"{where} is damaged: its {name} parameters are incomplete",
                            hint="use another copy of the backup") from None
    if any(v < 1 for v in params.values()):
        raise BackupCorrupt(f"{where} is damaged: its {name} parameters are not positive")
    if name == "scrypt":
        n, r = params["n"], params["r"]
        if n & (n - 1):
            raise BackupCorrupt(f"{where} is damaged: scrypt n={n} is not a power of two")
        memory = work = 128 * r * n * params["p"]
    else:
        memory = params["memory_kib"] * 1024
        work = memory * params["iterations"]
        if params["iterations"] > MAX_ITERATIONS or params["lanes"] > MAX_LANES:
            work = MAX_KDF_WORK + 1
    if memory > MAX_KDF_MEMORY or work > MAX_KDF_WORK:
        raise BackupError(f"{where} asks for a key derivation beyond what this console allows "
                          f"({describe_kdf({'name': name, **params})}; at most 1 GiB, and 2 GiB x passes)",
                          hint="it was not written by claude-console; do not trust it")
    weak = [k for k, floor in _MIN[name].items() if params[k] < floor]
    if weak and not allow_weak:
        raise BackupError(f"{where} uses key derivation parameters below the minimum "
                          f"({describe_kdf({'name': name, **params})}; minimum "
                          f"{describe_kdf({'name': name, **_MIN[name]})})",
                          hint="it was not written by this console's backup; do not trust it")
    return {"name": name, **params}


def _said(value: Any) -> str:
    """A value from a header, fit for a message (short, no control characters)."""
    from ..users import shown

    return shown(value, 40)


def _depth(text: bytes) -> int:
    """How deeply JSON ``text`` nests, found without parsing it (strings skipped)."""
    import re

    depth = deepest = 0
    for bracket in re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', text).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def describe_kdf(kdf: dict[str, Any]) -> str:
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
    head = data[_PREFIX.size:end]
    if _depth(head) > MAX_HEADER_DEPTH:
        raise BackupCorrupt(f"{where} is damaged: its header nests deeper than a backup header does; "
                            "nothing was restored", hint="use another copy of the backup")
    try:
        header = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError):
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
