"""Backups of every user's tokens: the portable sealed file, or a ``psql -f`` script."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotLoggedIn, UsageError
from ..users import shown
from .files import check_target, write_private
from .payload import AUTHOR_FIELDS, PAYLOAD_FIELDS, RECORD_FIELDS, encode_payload, json_strings
from .progress import Progress, bulk, noop
from .sealed import SCRYPT, derive_key, describe_kdf, seal

if TYPE_CHECKING:  # pragma: no cover
    from ..service import AuthService

SQL_TABLE = '"LiteLLM_ClaudeOAuthTokens"'


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


async def _read_rows(service: "AuthService", users: list[str] | None) -> tuple[dict[str, list | str | bytes], int, str]:
    """Every stored user as columns (tokens in the clear), primary tier first; env tokens left out.

    From PostgreSQL most columns arrive as JSON array text built by the database (see
    ``export_columns``), the tokens as lists; ``(columns, rows, source)``."""
    store = service.store
    primary = store.primary
    wanted = set(users) if users else None
    asked = sorted(wanted) if wanted else None
    columns: dict[str, list | str | bytes] = {name: [] for name in PAYLOAD_FIELDS}
    count = 0
    seen: set[str] = set()
    read = None
    if primary.CAN_EXPORT_COLUMNS:   # PostgreSQL: tokens decrypted here while the database builds the rest
        def clear(uids: list[str], access: list[str], refresh: list[str | None]):
            with bulk():   # plaintexts as bytes, straight into the JSON: no string per token
                access, refresh = primary.keyring.decrypt_pair(access, refresh, uids, raw=True)
                return uids, json_strings(access), json_strings(refresh)

        read = await primary.export_columns(asked, clear)
    if read is not None:
        (uids, access, refresh), texts = read
        columns.update(texts)
        columns["access_token"], columns["refresh_token"] = access, refresh
        count = len(uids)
        seen.update(uids)
    elif primary.CAN_EXPORT_ROWS:  # one query, rows as columns, no TokenRecord per row
        with bulk():
            names, rows = await primary.export_rows(asked)
            raw = dict(zip(names, map(list, zip(*rows)))) if rows else {n: [] for n in names}
            uids = raw["user_id"]
            raw["access_token"], raw["refresh_token"] = primary.keyring.decrypt_pair(
                raw["access_token"], raw["refresh_token"], uids)
            raw["scopes"] = [s if type(s) is list else list(s or ()) for s in raw["scopes"]]
            for name in PAYLOAD_FIELDS:
                columns[name] = raw.get(name) or [None] * len(uids)
            count = len(uids)
            seen.update(uids)
    exported = read is not None or primary.CAN_EXPORT_ROWS
    more: dict[str, list] = {name: [] for name in PAYLOAD_FIELDS}
    others = [t for t in store.backends if t.writable and (not exported or t is not primary)]
    for tier in others:
        for record in sorted(await tier.list(secrets=True), key=lambda r: r.user_id):
            if record.user_id in seen or record.source == "env" or (wanted and record.user_id not in wanted):
                continue
            seen.add(record.user_id)
            for name in RECORD_FIELDS:
                value = getattr(record, name)
                more[name].append(list(value) if name == "scopes" else value)
            for name in AUTHOR_FIELDS:
                more[name].append(None)
    for name, extra in more.items():
        columns[name] = _joined(columns[name], extra)
    return columns, count + len(more["user_id"]), primary.name


def _joined(column: list | str | bytes, more: list) -> list | str | bytes:
    """A column (a list, or a JSON array as text or bytes) with ``more`` values after it."""
    if not more:
        return column
    if isinstance(column, list):
        return column + more
    tail = json.dumps(more, separators=(",", ":"), ensure_ascii=False)
    head = column if isinstance(column, str) else column.decode()
    return tail if head.strip() == "[]" else f"{head.rstrip()[:-1]},{tail[1:]}"


async def backup(service: "AuthService", path: str | Path, passphrase: str | None, *,
                 users: list[str] | None = None, fmt: str = "portable", force: bool = False,
                 kdf: dict[str, Any] | None = None, progress: Progress | None = None) -> BackupSummary:
    """Write every user's tokens (or ``users``) to ``path``, 0600, atomically."""
    progress = progress or noop
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
        columns, count, source = await _read_rows(service, users)
        if users:
            _refuse_missing(users, _listed(columns["user_id"]))
        progress("read", count, count)
        now = service.clock.now()
        payload = encode_payload(columns, source, now, count)
        progress("encrypt", 0, count)
        derived = await deriving
    finally:
        if not deriving.done():
            deriving.cancel()
    data = await asyncio.to_thread(seal, payload, passphrase, kdf=params, key=(salt, derived),
                                   info={"created_at": round(now, 3), "producer": "claude-console"})
    await asyncio.to_thread(write_private, target, data)
    progress("encrypt", count, count)
    await service.record_event("backup", "*", True, f"{count} users to {target.name} (portable, "
                         f"{describe_kdf(params)})")
    return BackupSummary(str(target), count, "portable", len(data), describe_kdf(params),
                         time.monotonic() - started)


def _listed(column: list | str | bytes) -> list:
    return column if isinstance(column, list) else json.loads(column)


def _refuse_missing(asked: list[str] | None, found: list[str]) -> None:
    """``backup --user U``: a user who is not stored stops the backup before a byte is written."""
    missing = sorted(set(asked or ()) - set(found))
    if missing:
        names = ", ".join(f"'{shown(uid, 40)}'" for uid in missing[:5]) + (", …" if len(missing) > 5 else "")
        which = "user " + names + " is" if len(missing) == 1 else f"users {names} are"
        raise NotLoggedIn(f"{which} not stored, so nothing was backed up",
                          hint="list the stored users with: claude-console users")


async def _backup_sql(service: "AuthService", target: Path, users: list[str] | None,
                      progress: Progress, started: float) -> BackupSummary:
    primary = service.store.primary
    dump = primary.dump_table
    if not primary.CAN_DUMP_TABLE:
        raise UsageError("--format sql needs the PostgreSQL store, and this console stores tokens in the "
                         f"{primary.name} tier", hint="set DATABASE_URL, or make a portable backup "
                                                      "(without --format sql)")
    progress("read", 0, 0)
    if users:
        _refuse_missing(users, [r.user_id for r in await primary.list(secrets=False)])
    columns, data, count = await dump(users=sorted(set(users)) if users else None,
                                      exclude=("refresh_claimed_until", "refresh_claimed_by"))
    key_ids = primary.keyring.key_ids
    text = sql_script(columns, data, count, key_ids)
    await asyncio.to_thread(write_private, target, text)
    progress("read", count, count)
    await service.record_event("backup", "*", True, f"{count} users to {target.name} (sql, still encrypted)")
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
