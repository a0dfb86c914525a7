"""The schema's migrations: the ``.sql`` files in this folder, applied in order, each once.

Each file is also safe to run by hand with ``psql -f`` (the first one is the seed's own
``migrations/add_claude_oauth_tokens.sql``, byte for byte).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

from ....errors import StorageError
from ..connection import is_connection_error, lock_key
from ..sql import MIGRATIONS

log = logging.getLogger("console.store.postgres")

MIGRATION_LOCK = lock_key("\x00migrations")


@dataclass
class Migration:
    id: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The SQL files shipped beside this module, in order."""
    folder = resources.files(__package__)
    found = [Migration(entry.name[:-4], entry.read_text(encoding="utf-8"))
             for entry in folder.iterdir() if entry.name.endswith(".sql")]
    return sorted(found, key=lambda m: m.id)


async def apply_migrations(conn) -> list[str]:
    """Apply what is missing, in one transaction under an advisory lock; return what ran."""
    wanted = migrations()
    try:
        done = {r[0] for r in await conn.fetch(f"SELECT id FROM {MIGRATIONS}")}
        if all(m.id in done for m in wanted):
            return []
    except Exception as exc:
        import asyncpg

        if not isinstance(exc, asyncpg.exceptions.UndefinedTableError):
            raise
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS} (
            id TEXT PRIMARY KEY, checksum TEXT NOT NULL,
            applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP)""")
        done = {r[0]: r[1] for r in await conn.fetch(f"SELECT id, checksum FROM {MIGRATIONS}")}
        for m in wanted:
            if m.id in done:
                if done[m.id] != m.checksum:
                    log.warning("migration %s was applied from a different file (checksum differs)", m.id)
                continue
            try:
                await conn.execute(m.sql)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StorageError(f"database migration {m.id} failed: {first}; nothing was changed",
                                   hint="run claude-console migrate as the owner of the tables") from None
            await conn.execute(f"INSERT INTO {MIGRATIONS} (id, checksum) VALUES ($1, $2)", m.id, m.checksum)
            applied.append(m.id)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied
