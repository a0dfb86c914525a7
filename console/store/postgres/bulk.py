"""The tier's bulk paths: listing in keyset pages, backups (rows as stored, a COPY dump) and
restores (COPY into a temporary table, then one upsert), and many audit events at once.

A mixin of ``PostgresTier``: it runs its statements through the tier's public ``attempt``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
from functools import lru_cache
from operator import itemgetter
from typing import Any, Awaitable, Callable, TypeVar

from ...crypto import Keyring
from ...errors import StorageError
from ...tokens import TokenRecord
from ..base import AuditEvent, BulkAudit
from .sql import (APPEND_AUDIT_MANY, BULK, BULK_COLUMNS, BULK_CREATE, BULK_UPSERT, BULK_WORK_MEM, EXPORT,
                  EXPORT_FIELDS, EXPORT_JSON, EXPORT_JSON_FIELDS, EXPORT_SETTINGS, EXPORT_TOKENS, FIELDS,
                  FIRST_PAGE, KEY_ID_INDEX, NEXT_PAGE, SELECT_ALL_HIDDEN, SELECT_ALL_SECRETS, TABLE_COLUMNS, TOKENS)


T = TypeVar("T")
_KEY_ID = itemgetter(KEY_ID_INDEX)
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


class _ListedFields:
    """What a listed user adds to its row: the ``TokenRecord`` behaviour of a bare row.

    The board lists 100 000 users and reads each one's fields several times while loading.
    asyncpg builds each row straight into a subclass of its ``Record`` (``record_class``) whose
    fields are C-level ``itemgetter`` properties: no copy of the row, and a field reads about
    twice as fast as through a record that looks it up from Python. ``source`` and the
    configured key ids are class attributes of a subclass made per listing source and keyring
    (``listed_type``). ``evolve`` and equality work on a plain ``TokenRecord``, so callers
    cannot tell the difference.
    """

    __slots__ = ()
    source = ""
    _keys: frozenset[str] = frozenset()

    @property
    def locked(self) -> str | None:
        """The key id this row's tokens are under when that key is not configured."""
        kid = self[KEY_ID_INDEX]
        if kid is None or kid in self._keys:
            return None
        return None if kid == "fernet" and self._keys else kid

    @classmethod
    def none_locked(cls, records: list[TokenRecord]) -> bool:
        """A page's key ids against this class's keys: one set, no call per row."""
        kids = set(map(_KEY_ID, records))
        kids.discard(None)
        if "fernet" in kids and cls._keys:
            kids.discard("fernet")
        return kids <= cls._keys

    def plain(self) -> TokenRecord:
        return TokenRecord(**{name: getattr(self, name) for name in TokenRecord.__dataclass_fields__})

    def evolve(self, **changes: Any) -> TokenRecord:
        return self.plain().evolve(**changes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListedRecord):
            other = other.plain()
        return self.plain() == other if isinstance(other, TokenRecord) else NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]
    __repr__ = TokenRecord.__repr__
    # A record, not a sequence or a mapping: none of a row's ordering or lookups by name.
    __lt__ = __le__ = __gt__ = __ge__ = get = keys = values = items = None  # type: ignore[assignment]


for _index, _name in enumerate(FIELDS):
    setattr(_ListedFields, _name, property(itemgetter(_index)))


class _Listed(type):
    """``isinstance(x, ListedRecord)`` before asyncpg is imported: any listed row."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _ListedFields) and isinstance(obj, TokenRecord)


class ListedRecord(metaclass=_Listed):
    """The type of every listed row (an ``isinstance`` check only; see ``_ListedFields``)."""


@lru_cache(maxsize=64)
def listed_type(source: str, keys: frozenset[str]) -> type:
    """The row class asyncpg builds rows listed from ``source`` under these key ids into."""
    import asyncpg

    return type("ListedRecord", (_ListedFields, asyncpg.Record, TokenRecord),
                {"__slots__": (), "source": source, "_keys": keys,
                 "__init__": asyncpg.Record.__init__})  # asyncpg's rule: not the dataclass's


class BulkPaths:
    """Listing pages, export, dump, bulk upsert and bulk audit for ``PostgresTier``."""

    CAN_LIST_PAGE = CAN_PUT_MANY = CAN_EXPORT_ROWS = CAN_EXPORT_COLUMNS = CAN_DUMP_TABLE = CAN_APPEND_AUDIT_MANY = True

    name: str
    keyring: Keyring
    actor: str
    write_patience: float
    attempt: Callable[..., Awaitable[Any]]
    _pool: Callable[..., Awaitable[Any]]
    decode_row: Callable[..., TokenRecord]

    async def list_page(self, after: str | None, limit: int, secrets: bool = False) -> list[TokenRecord]:
        """Up to ``limit`` users after ``after`` in user id order: keyset pages, so the board
        shows its first rows before the last of 100 000 arrive."""
        if after is None:
            return await self.fetch_records(secrets, FIRST_PAGE, limit)
        return await self.fetch_records(secrets, NEXT_PAGE, after, limit)

    async def fetch_records(self, secrets: bool, tail: str = "", *args: Any) -> list[TokenRecord]:
        """The listing's SELECT plus ``tail``: decrypted records if ``secrets``, else rows built
        straight into this tier's ``ListedRecord`` class (nothing to decrypt or copy)."""
        if secrets:
            rows = await self.attempt(lambda conn: conn.fetch(SELECT_ALL_SECRETS + tail, *args))
            return [self.decode_row(row) for row in rows]
        return await self.fetch_listed(SELECT_ALL_HIDDEN + tail, *args)

    async def fetch_listed(self, sql: str, *args: Any) -> list[TokenRecord]:
        """Rows of ``sql`` (the listing's columns first) as listed records."""
        listed = listed_type(self.name, frozenset(self.keyring.key_ids))
        collecting = gc.isenabled()
        gc.disable()  # 100 000 new objects would trigger many full collections for nothing
        try:
            return await self.attempt(lambda conn: conn.fetch(sql, *args, record_class=listed))
        finally:
            if collecting:
                gc.enable()

    async def export_rows(self, users: list[str] | None = None) -> tuple[list[str], list]:
        """Every row (or ``users``) in one query, tokens as stored (encrypted), with who created
        and last updated it: ``(field names, rows)`` for backups."""
        rows = await self.attempt(lambda conn: conn.fetch(EXPORT, users))
        return list(EXPORT_FIELDS), rows

    async def export_columns(self, users: list[str] | None,
                             tokens: Callable[[list[str], list[str], list[str | None]], T]
                             ) -> tuple[T, dict[str, str]] | None:
        """A backup's rows (or ``users``') as columns, in user id order, from one snapshot.

        ``tokens(user ids, access, refresh)`` gets the ciphertexts as stored and runs here (it
        decrypts) while PostgreSQL builds every other field of ``EXPORT_FIELDS`` as one JSON
        array on a second connection that shares the first one's snapshot: returns ``(what
        tokens returned, {field: JSON array text})``, or None if the two reads do not line up
        (the caller then reads through ``export_rows``)."""
        import asyncpg

        pool = await self._pool()
        if pool.get_max_size() < 2:   # a given pool of one: the second read would wait forever
            return None

        async def read(conn):
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(EXPORT_SETTINGS)
                try:
                    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
                except asyncpg.PostgresError:   # a server that cannot share its snapshot
                    return None
                if not _SNAPSHOT_ID.fullmatch(str(snapshot)):
                    return None
                sent = asyncio.Event()

                async def columns(other):
                    async with other.transaction(isolation="repeatable_read", readonly=True):
                        await other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'; {EXPORT_SETTINGS}")
                        sent.set()   # the first read starts once this one is under way
                        return await other.fetchrow(EXPORT_JSON, users)

                built = asyncio.ensure_future(self.attempt(columns))
                waiting = asyncio.ensure_future(sent.wait())
                try:
                    await asyncio.wait([built, waiting], return_when=asyncio.FIRST_COMPLETED)
                    if built.done():
                        built.result()   # it failed before its query: raise that here
                    rows = await conn.fetch(EXPORT_TOKENS, users)
                    uids, access, refresh = map(list, zip(*rows)) if rows else ([], [], [])
                    del rows
                    result = tokens(uids, access, refresh)
                    row = await built
                finally:
                    waiting.cancel()
                    if not built.done():
                        built.cancel()
                        await asyncio.gather(built, return_exceptions=True)
            texts = dict(zip(EXPORT_JSON_FIELDS, row))
            if json.loads(texts["user_id"]) != uids:   # the two reads must line up row by row
                return None
            return result, texts

        return await self.attempt(read)

    async def put_many(self, records: list[TokenRecord], expected: dict[str, int] | None = None,
                       authors: dict[str, tuple[str | None, str | None]] | None = None,
                       audit: BulkAudit | None = None) -> list[str]:
        """Bulk upsert in one transaction (COPY into a temporary table, then one upsert); returns
        the users written. With ``expected``, a user is written only while its version still
        equals ``expected[user]`` (0: not stored), so a refresh that landed meanwhile is kept.
        Rows keep the records' own times and authors (``authors[user] = (created_by, updated_by)``).
        ``audit``: the same statement inserts an audit row for each user it wrote, so a change
        never commits without its trail (nor costs a round trip of its own)."""
        authors, wanted = authors or {}, expected or {}
        details = audit.details if audit is not None else {}
        action, auditor = (audit.action, audit.actor) if audit is not None else (None, None)
        uids = [r.user_id for r in records]
        if len(set(uids)) != len(uids):
            raise StorageError("a user appears twice in one bulk write; nothing was written")
        access, refresh = self.keyring.encrypt_pair([r.access_token for r in records],
                                                    [r.refresh_token for r in records], uids)
        rows = []
        for r, enc_access, enc_refresh in zip(records, access, refresh):
            by = authors.get(r.user_id) or (None, None)
            rows.append((r.user_id, int(wanted.get(r.user_id, 0)), enc_access, enc_refresh or None,
                         float(r.expires_at), list(r.scopes),
                         r.account_email, r.account_uuid, r.organization_uuid, r.organization_name,
                         r.subscription_type, int(r.refresh_count or 0), r.last_refresh_at,
                         r.last_refresh_error_at, r.last_refresh_error, int(r.refresh_failures or 0),
                         bool(r.needs_login), float(r.created_at or 0), float(r.updated_at or 0), r.last_used,
                         by[0], by[1], details.get(r.user_id)))
        if not rows:
            return []
        names = [c for c, _ in BULK_COLUMNS]

        async def write(conn):
            async with conn.transaction():
                # JIT-compiling this upsert costs more than running it (~0.3 s a batch). The change
                # feed's statement triggers keep every row written (transition tables): at the
                # default 4 MB of work_mem a batch's rows spill to disk (15-20 % of the upsert).
                await conn.execute(f"SET LOCAL jit = off; SET LOCAL work_mem = '{BULK_WORK_MEM}'; {BULK_CREATE}")
                await conn.copy_records_to_table(BULK, records=rows, columns=names)
                done = await conn.fetch(BULK_UPSERT, self.actor, expected is None, action, auditor)
            return [row[0] for row in done]

        return await self.attempt(write, patience=self.write_patience)

    async def append_audit_many(self, events: list[AuditEvent]) -> None:
        """Many events (a restore's) in one statement."""
        if not events:
            return
        columns = list(zip(*((float(e.ts), e.user_id, e.action, bool(e.ok), e.detail, e.actor) for e in events)))
        await self.attempt(lambda conn: conn.execute(APPEND_AUDIT_MANY, *map(list, columns)))

    async def dump_table(self, users: list[str] | None = None, exclude: tuple[str, ...] = ()
                         ) -> tuple[list[tuple[str, str]], bytes, int]:
        """The tokens table for an SQL backup: ``(columns with their types, COPY text, rows)``,
        ciphertext exactly as stored."""
        async def dump(conn):
            found = await conn.fetch(TABLE_COLUMNS, TOKENS)
            columns = [(r[0], r[1]) for r in found if r[0] not in exclude]
            chunks: list[bytes] = []

            async def sink(chunk: bytes) -> None:
                chunks.append(bytes(chunk))

            names = ", ".join(f'"{c}"' for c, _ in columns)
            async with conn.transaction():  # SET LOCAL: pooled sessions are not reset on release
                await conn.execute("SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'")
                status = await conn.copy_from_query(
                    f"SELECT {names} FROM {TOKENS} WHERE $1::text[] IS NULL OR user_id = ANY($1::text[]) "
                    "ORDER BY user_id", users, output=sink, format="text")
            return columns, b"".join(chunks), int(str(status).split()[-1])

        return await self.attempt(dump)

