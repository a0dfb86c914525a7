"""Encryption of tokens at rest: AES-256-GCM, the user id as associated data, key ids.

A value looks like ``enc:v1:<key id>:<base64url(nonce | ciphertext | tag)>``. The key id
(first 8 hex digits of SHA-256 of the key) lets a keyring of several keys decrypt old
values while the first key encrypts new ones, which is how rotation works. Binding the
user id as associated data means a ciphertext copied onto another user's row fails.
Values written with Fernet under the same key (the seed's format) still decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from .errors import ConfigError, CryptoError, NoKeyConfigured, UnknownKey

PREFIX = "enc:v1:"
_NONCE = 12
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
KEYGEN_COMMAND = (
    "python -c \"import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())\""
)


def _b64decode(text: str) -> bytes:
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def is_encrypted(value: str | None) -> bool:
    return bool(value) and (value.startswith(PREFIX) or value.startswith("gAAAAA"))


class Keyring:
    """The configured keys: the first encrypts, all decrypt."""

    def __init__(self, keys: list[bytes]) -> None:
        for key in keys:
            if len(key) != 32:
                raise ConfigError("an encryption key is not 32 bytes",
                                  hint=f"generate one with: {KEYGEN_COMMAND}")
        self.keys = list(keys)
        self._by_id = {key_id(k): k for k in keys}
        self._aead = {}

    @classmethod
    def from_spec(cls, spec: str | None, *, source: str = "CLAUDE_TOKEN_ENCRYPTION_KEY") -> "Keyring":
        """Parse ``key1,key2``: urlsafe (or standard) base64 of 32 bytes each."""
        keys = []
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                raw = _b64decode(part)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ConfigError(f"{source}: a key is not base64 of 32 bytes",
                                  hint=f"generate one with: {KEYGEN_COMMAND}")
            keys.append(raw)
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @property
    def primary_id(self) -> str | None:
        return key_id(self.keys[0]) if self.keys else None

    @property
    def key_ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def _cipher(self, kid: str):
        cipher = self._aead.get(kid)
        if cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            cipher = self._aead[kid] = AESGCM(self._by_id[kid])
        return cipher

    def encrypt(self, plaintext: str, aad: str) -> str:
        if not self.keys:
            raise NoKeyConfigured("no encryption key is configured",
                                  hint="set CLAUDE_TOKEN_ENCRYPTION_KEY")
        kid = self.primary_id
        nonce = os.urandom(_NONCE)
        sealed = self._cipher(kid).encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def value_key_id(self, value: str) -> str | None:
        if value.startswith(PREFIX):
            return value[len(PREFIX):].split(":", 1)[0]
        return None

    def locked_by(self, value: str | None) -> str | None:
        """The key id a stored value is encrypted under when that key is not configured
        (``fernet`` for a Fernet value while no key is), else None: a listing's cheap test
        for rows it could not decrypt, made without decrypting anything."""
        if not value:
            return None
        if value.startswith(PREFIX):
            kid = value[len(PREFIX):len(PREFIX) + 8]
            return None if kid in self._by_id else kid
        if value.startswith("gAAAAA") and not self.keys:
            return "fernet"
        return None

    def decrypt(self, value: str, aad: str) -> str:
        if value.startswith(PREFIX):
            try:
                kid, body = value[len(PREFIX):].split(":", 1)
                blob = _b64decode(body)
            except (ValueError, binascii.Error):
                raise CryptoError(f"a stored token for user {aad!r} is not a valid ciphertext",
                                  hint="restore it from a backup or log the user in again") from None
            if kid not in self._by_id:
                if not self.keys:
                    raise NoKeyConfigured(
                        f"tokens for user {aad!r} are encrypted (key id {kid}) but no key is configured",
                        hint="set CLAUDE_TOKEN_ENCRYPTION_KEY to the key that wrote them")
                raise UnknownKey(
                    f"tokens for user {aad!r} were encrypted with key id {kid}, which is not configured "
                    f"(configured: {', '.join(self.key_ids)})",
                    hint="add that key to CLAUDE_TOKEN_ENCRYPTION_KEY (comma-separated, new key first)")
            from cryptography.exceptions import InvalidTag

            try:
                return self._cipher(kid).decrypt(blob[:_NONCE], blob[_NONCE:], aad.encode()).decode()
            except InvalidTag:
                raise CryptoError(
                    f"a stored token for user {aad!r} failed authentication under key id {kid} "
                    "(tampered, or copied from another user)",
                    hint="restore it from a backup or log the user in again") from None
        if value.startswith("gAAAAA"):
            return self._decrypt_fernet(value, aad)
        return value

    def _decrypt_fernet(self, value: str, aad: str) -> str:
        if not self.keys:
            raise NoKeyConfigured(f"tokens for user {aad!r} are Fernet-encrypted but no key is configured",
                                  hint="set CLAUDE_TOKEN_ENCRYPTION_KEY to the key that wrote them")
        from cryptography.fernet import Fernet, InvalidToken

        for key in self.keys:
            try:
                return Fernet(base64.urlsafe_b64encode(key)).decrypt(value.encode()).decode()
            except InvalidToken:
                continue
        raise UnknownKey(f"tokens for user {aad!r} are Fernet-encrypted under a key that is not configured",
                         hint="add the key that wrote them to CLAUDE_TOKEN_ENCRYPTION_KEY")

    def needs_rotation(self, value: str | None) -> bool:
        """True when a value is plaintext, Fernet, or under a key other than the first."""
        if not value or not self.keys:
            return False
        return self.value_key_id(value) != self.primary_id

    # -- bulk (backups, restores): the same values as encrypt/decrypt, less per-call work --

    def _sealer(self):
        """The primary key's AES-GCM ``encrypt`` and the text every value it seals starts with."""
        if not self.keys:
            raise NoKeyConfigured("no encryption key is configured", hint="set CLAUDE_TOKEN_ENCRYPTION_KEY")
        kid = self.primary_id
        return self._cipher(kid).encrypt, f"{PREFIX}{kid}:"

    def encrypt_many(self, values: list[str | None], aads: list[str]) -> list[str | None]:
        """``encrypt`` for each value (``None`` and ``""`` stay as they are)."""
        seal, head = self._sealer()
        urandom, b64 = os.urandom, base64.urlsafe_b64encode
        out: list[str | None] = []
        for value, aad in zip(values, aads):
            if not value:
                out.append(value)
                continue
            nonce = urandom(_NONCE)
            out.append(head + b64(nonce + seal(nonce, value.encode(), aad.encode())).decode().rstrip("="))
        return out

    def decrypt_pair(self, first: list[str | None], second: list[str | None], aads: list[str], *,
                     raw: bool = False) -> tuple[list, list]:
        """``decrypt_many`` of two columns of the same users (a backup's access and refresh
        tokens) in one pass: each user id is encoded once, each value decoded without a call
        into ``decrypt`` unless it is off the fast path. ``raw``: the plaintexts as UTF-8
        bytes (``None`` and ``""`` stay as they are), for a caller that writes bytes anyway."""
        from cryptography.exceptions import InvalidTag

        heads = {f"{PREFIX}{kid}:": self._cipher(kid).decrypt for kid in self._by_id}
        size = len(PREFIX) + 9   # "enc:v1:" + 8 hex digits of key id + ":"
        a2b, urlsafe, slow = binascii.a2b_base64, _URLSAFE, self.decrypt
        out_first: list = []
        out_second: list = []

        def one(value: str | None, aad: bytes, user: str) -> str | bytes | None:
            decrypt = heads.get(value[:size]) if value else None
            if decrypt is not None:
                try:  # lenient decoding is fine here: a wrong byte fails the tag below
                    blob = a2b(value[size:].encode().translate(urlsafe) + b"==")
                    clear = decrypt(blob[:_NONCE], blob[_NONCE:], aad)
                    return clear if raw else clear.decode()
                except (InvalidTag, ValueError, binascii.Error):
                    pass
            if not value:
                return b"" if raw and value == "" else value
            return slow(value, user).encode() if raw else slow(value, user)

        put_first, put_second = out_first.append, out_second.append
        for a, b, user in zip(first, second, aads):
            aad = user.encode()
            decrypt = heads.get(a[:size]) if a else None
            if decrypt is not None and b:   # the common case inline: both tokens under a known key
                other = heads.get(b[:size])
                if other is not None:
                    try:
                        blob = a2b(a[size:].encode().translate(urlsafe) + b"==")
                        clear_a = decrypt(blob[:_NONCE], blob[_NONCE:], aad)
                        blob = a2b(b[size:].encode().translate(urlsafe) + b"==")
                        clear_b = other(blob[:_NONCE], blob[_NONCE:], aad)
                        if raw:
                            put_first(clear_a)
                            put_second(clear_b)
                        else:
                            put_first(clear_a.decode())
                            put_second(clear_b.decode())
                        continue
                    except (InvalidTag, ValueError, binascii.Error):
                        pass   # nothing was appended: both go the long way below
            put_first(one(a, aad, user))
            put_second(one(b, aad, user))
        return out_first, out_second

    def encrypt_pair(self, first: list[str | None], second: list[str | None], aads: list[str]
                     ) -> tuple[list[str | None], list[str | None]]:
        """``encrypt_many`` of two columns of the same users (a restore's access and refresh
        tokens) in one pass: each user id encoded once, every nonce cut from one ``urandom``
        read, each value built as bytes and decoded once (a restore seals 200 000 tokens)."""
        seal, head = self._sealer()
        prefix, b64, urlsafe = head.encode(), binascii.b2a_base64, _TO_URLSAFE
        nonces = os.urandom(2 * _NONCE * len(aads))
        out_first: list[str | None] = []
        out_second: list[str | None] = []
        put_first, put_second = out_first.append, out_second.append
        at = 0
        for a, b, user in zip(first, second, aads):
            aad = user.encode()
            if a:
                nonce = nonces[at:at + _NONCE]
                put_first((prefix + b64(nonce + seal(nonce, a.encode(), aad), newline=False)
                           .translate(urlsafe).rstrip(b"=")).decode())
            else:
                put_first(a)
            if b:
                nonce = nonces[at + _NONCE:at + 2 * _NONCE]
                put_second((prefix + b64(nonce + seal(nonce, b.encode(), aad), newline=False)
                            .translate(urlsafe).rstrip(b"=")).decode())
            else:
                put_second(b)
            at += 2 * _NONCE
        return out_first, out_second

    def decrypt_many(self, values: list[str | None], aads: list[str]) -> list[str | None]:
        """``decrypt`` for each value; anything off the fast path (other formats, errors) goes
        through ``decrypt`` itself, so failures raise the same one-line errors."""
        from cryptography.exceptions import InvalidTag

        heads = {f"{PREFIX}{kid}:": self._cipher(kid).decrypt for kid in self._by_id}
        size = len(PREFIX) + 9   # "enc:v1:" + 8 hex digits of key id + ":"
        a2b, urlsafe = binascii.a2b_base64, _URLSAFE
        out: list[str | None] = []
        append = out.append
        for value, aad in zip(values, aads):
            decrypt = heads.get(value[:size]) if value else None
            if decrypt is not None:
                try:  # lenient decoding is fine here: a wrong byte fails the tag below
                    blob = a2b(value[size:].encode().translate(urlsafe) + b"==")
                    append(decrypt(blob[:_NONCE], blob[_NONCE:], aad.encode()).decode())
                    continue
                except (InvalidTag, ValueError, binascii.Error):
                    pass
            append(self.decrypt(value, aad) if value else value)
        return out
