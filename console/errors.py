"""Every error the console raises, in one hierarchy.

Each error carries one line for the operator (``str(err)``) that says what happened
and the command that fixes it, and an exit code the CLI returns. Faces catch
``ConsoleError`` and print that line; nothing else should reach a user.
"""

from __future__ import annotations


class ConsoleError(Exception):
    """Base class: a message fit for an operator, plus a process exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(ConsoleError):
    """Bad arguments or a bad configuration value."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file or an environment variable is wrong."""


# --- storage --------------------------------------------------------------------------


class StorageError(ConsoleError):
    """Stored data cannot be read or written; nothing was changed."""

    exit_code = 3


class TierUnavailable(StorageError):
    """A storage tier is down (connection refused, timed out). Reads may skip it."""


class StorageCorrupt(StorageError):
    """A stored file or row cannot be parsed. Never skipped: skipping could overwrite it."""


class InsecurePermissions(StorageError):
    """A token file is readable by others; refused until fixed with chmod."""


class StaleWrite(StorageError):
    """A compare-and-swap lost: someone stored a newer token first."""


class DiskFull(StorageError):
    """A write hit ENOSPC, EDQUOT or EROFS: the file it would have replaced is kept as it was."""


class NotYetStored(StorageError):
    """The provider rotated the tokens but the store did not take them yet: the new tokens are
    held locally (rescue journal and memory) and retried. ``record`` is the live record."""

    def __init__(self, message: str, *, hint: str | None = None, record=None) -> None:
        super().__init__(message, hint=hint)
        self.record = record


# --- crypto ---------------------------------------------------------------------------


class CryptoError(StorageError):
    """A stored secret cannot be decrypted."""


class UnknownKey(CryptoError):
    """A value was encrypted under a key id that is not configured."""


class NoKeyConfigured(CryptoError):
    """Encrypted data was found but no encryption key is configured."""


# --- OAuth ----------------------------------------------------------------------------


class OAuthError(ConsoleError):
    """The provider refused a request or could not be reached."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 error: str | None = None, kind: str | None = None, exit_code: int | None = None,
                 description: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.error = error
        self.kind = kind  # the row of console/refusals.py that named it, if any
        self.description = description
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidGrant(OAuthError):
    """The refresh token or code was rejected for good: the user must log in again."""


class AccountBlocked(OAuthError):
    """Claude disabled the organization or refuses OAuth for it: kept, never refreshed."""


class TransientOAuthError(OAuthError):
    """429, 5xx or a network error, still failing after the retries. Tokens untouched."""


class RateLimited(TransientOAuthError):
    """The provider answered 429 until we gave up."""


class LoginError(ConsoleError):
    """A pasted code or a pending login is wrong, expired or already used."""


class NotLoggedIn(ConsoleError):
    """No token is stored for this user."""


class NeedsLogin(ConsoleError):
    """The refresh token was rejected: only a new login helps."""


# --- backups --------------------------------------------------------------------------


class BackupError(ConsoleError):
    """A backup file cannot be used (not a backup, unknown format or KDF); nothing was restored."""


class BackupCorrupt(BackupError):
    """A backup file is truncated or was changed: authentication failed."""


class WrongPassphrase(BackupError):
    """The passphrase does not open this backup."""
