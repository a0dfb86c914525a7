"""Key rotation on the PostgreSQL tier: re-encrypting every row to the first key.

Rotation runs online: each batch is one short statement that writes only rows whose
``version`` is still the one read (a refresh that lands first wins, and it already encrypted
with the first key). It does not bump the version, because the plaintext is unchanged and a
refresh holding that version must still be able to save. Running it again picks up where it
stopped: rows already under the first key are skipped.
"""

from __future__ import annotations

from typing import Callable

from typing import TYPE_CHECKING

from ...errors import CryptoError, NoKeyConfigured, UnknownKey
from ..base import RotationReport
from .sql import ROTATE_PAGE, ROTATE_PENDING_PAGE, ROTATE_PENDING_WRITE, ROTATE_WRITE

if TYPE_CHECKING:
    from .tier import PostgresTier



def _key_of(tier: "PostgresTier", value: str | None) -> str:
    if not value:
        return "?"
    return tier.keyring.value_key_id(value) or ("fernet" if value.startswith("gAAAAA") else "plaintext")


async def rotate_keys(tier: "PostgresTier", *, batch: int = 500,
                      progress: Callable[[RotationReport], None] | None = None,
                      on_batch: Callable[[list[str]], object] | None = None) -> RotationReport:
    """Re-encrypt every token row and pending verifier to the keyring's first key."""
    keyring = tier.keyring
    if not keyring.enabled:
        raise NoKeyConfigured("rotate-key needs the new key first in CLAUDE_TOKEN_ENCRYPTION_KEY",
                              hint="set CLAUDE_TOKEN_ENCRYPTION_KEY=NEW_KEY,OLD_KEY and run again")
    batch = max(1, int(batch))
    report = RotationReport(keyring.primary_id)
    for _ in range(5):  # a pass re-reads what concurrent writes changed; they converge at once
        raced = await _rotate_tokens(tier, batch, report, progress, on_batch)
        if not raced:
            break
    await _rotate_pending(tier, batch, report)
    if report.complete:
        report.retired = [kid for kid in keyring.key_ids if kid != report.key_id]
    return report


async def _rotate_tokens(tier, batch, report, progress, on_batch) -> int:
    keyring = tier.keyring
    after, raced = "", 0
    report.current = 0
    while True:
        rows = await tier.attempt(lambda conn: conn.fetch(ROTATE_PAGE, after, batch))
        if not rows:
            return raced
        after = rows[-1][0]
        users, access, refresh, versions = [], [], [], []
        for user_id, enc_access, enc_refresh, version in rows:
            if not (keyring.needs_rotation(enc_access) or keyring.needs_rotation(enc_refresh)):
                report.current += 1
                continue
            try:
                plain_access = keyring.decrypt(enc_access, user_id)
                plain_refresh = keyring.decrypt(enc_refresh, user_id) if enc_refresh else None
            except UnknownKey:
                report.unreadable[_key_of(tier, enc_access if keyring.needs_rotation(enc_access)
                                          else enc_refresh)] += 1
                continue
            except CryptoError:
                report.unreadable["damaged"] += 1
                continue
            users.append(user_id)
            access.append(keyring.encrypt(plain_access, user_id))
            refresh.append(keyring.encrypt(plain_refresh, user_id) if plain_refresh else None)
            versions.append(version)
        if users:
            done = await tier.attempt(lambda conn: conn.fetch(ROTATE_WRITE, users, access, refresh, versions))
            written = [r[0] for r in done]
            report.rotated += len(written)
            report.current += len(written)
            missed = len(users) - len(written)
            raced += missed
            report.raced += missed
            if on_batch is not None and written:
                result = on_batch(written)
                if hasattr(result, "__await__"):
                    await result
        if progress is not None:
            progress(report)


async def _rotate_pending(tier, batch, report) -> None:
    keyring = tier.keyring
    after = ""
    while True:
        rows = await tier.attempt(lambda conn: conn.fetch(ROTATE_PENDING_PAGE, after, batch))
        if not rows:
            return
        after = rows[-1][0]
        states, old, new = [], [], []
        for state, verifier in rows:
            if not keyring.needs_rotation(verifier):
                continue
            try:
                plain = keyring.decrypt(verifier, state)
            except CryptoError:
                continue  # a pending login lives ten minutes: an unreadable one just expires
            states.append(state)
            old.append(verifier)
            new.append(keyring.encrypt(plain, state))
        if states:
            done = await tier.attempt(lambda conn: conn.fetch(ROTATE_PENDING_WRITE, states, old, new))
            report.pending_rotated += len(done)
