"""What a sealed backup holds: every user's record, column by column, with its audit fields.

The body is JSON: records with their audit fields (created/updated at and by, last use,
refresh counts and errors), tokens in the clear *inside* the encryption, so the file restores
under any store key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from itertools import repeat, starmap
from typing import Any

from ..errors import BackupCorrupt
from ..tokens import EARLIEST, LATEST, TEXT_MAX, TokenRecord, check_columns
from ..users import _CONTROL, USER_ID_MAX, user_id_problem
from .progress import bulk

PAYLOAD_KIND = "claude-console-backup"

RECORD_FIELDS = tuple(f.name for f in fields(TokenRecord) if f.name != "source")
_INIT_ORDER = tuple(f.name for f in fields(TokenRecord))   # TokenRecord's positional arguments
AUTHOR_FIELDS = ("created_by", "updated_by")
PAYLOAD_FIELDS = RECORD_FIELDS + AUTHOR_FIELDS
_NUMBERS = ("created_at", "updated_at", "last_used", "last_refresh_at", "last_refresh_error_at")


def _record_defaults() -> dict[str, Any]:
    blank = TokenRecord(user_id="", access_token="")
    return {name: getattr(blank, name) for name in RECORD_FIELDS}


@dataclass
class BackupContents:
    """A decrypted backup: the records, who created/updated them, and where they came from."""

    path: str
    header: dict[str, Any]
    created_at: float
    source: str
    records: list[TokenRecord]
    authors: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # Rows refused as they were read: (the id as stored, possibly not text; what is wrong).
    refused: list[tuple[Any, str]] = field(default_factory=list)

    @property
    def users(self) -> list[str]:
        return [r.user_id for r in self.records]


def encode_payload(columns: dict[str, list | str | bytes], source: str, created_at: float,
                   count: int | None = None) -> bytes:
    """The body's bytes. A column is a list, or a JSON array already written (text or UTF-8
    bytes: a backup from PostgreSQL gets its columns that way, and says how many rows), spliced
    in as it is."""
    if count is None:
        count = len(columns["user_id"])
    doc = {"kind": PAYLOAD_KIND, "created_at": created_at, "source": source, "count": count,
           "fields": list(columns)}
    with bulk():
        head = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        parts = [c if isinstance(c, bytes) else c.encode() if isinstance(c, str)
                 else json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode() for c in columns.values()]
        return b"".join((head[:-1], b',"columns":[', b",".join(parts), b"]}"))


# Bytes a JSON string may hold as they are: printable ASCII but the quote and the backslash.
_NOT_PLAIN = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')


def json_strings(values: list[bytes | None]) -> bytes:
    """A JSON array of UTF-8 strings (``None``: null) as bytes. Tokens are plain ASCII: then
    the array is joined at C speed, with no string object per value; otherwise ``json``."""
    present = [v for v in values if v is not None] if None in values else values
    if _NOT_PLAIN.search(b"".join(present)) is None:
        if present is values:
            return b'["' + b'","'.join(values) + b'"]' if values else b"[]"
        return b"[" + b",".join([b"null" if v is None else b'"' + v + b'"' for v in values]) + b"]"
    return json.dumps([None if v is None else v.decode() for v in values], separators=(",", ":"),
                      ensure_ascii=False).encode()


def decode_payload(payload: bytes, where: str, header: dict[str, Any]) -> BackupContents:
    def damaged(why: str) -> BackupCorrupt:
        return BackupCorrupt(f"{where} decrypted but its contents are damaged ({why}); nothing was restored",
                             hint="use another copy of the backup")

    with bulk():
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
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
        refused = _refused_rows(by_name, count)
        if refused:  # refused per user (the plan shows them); the others restore as usual
            keep = [i for i in range(count) if i not in refused]
            refused_ids = [(by_name["user_id"][i], why) for i, why in sorted(refused.items())]
            by_name = {name: [col[i] for i in keep] for name, col in by_name.items()}
            count = len(keep)
        else:
            refused_ids = []
        uids = by_name["user_id"]
        if len(set(uids)) != count:
            raise damaged("a user appears twice")
        try:
            by_name["expires_at"] = _floats(by_name.get("expires_at") or [0.0] * count, 0.0)
            for name in _NUMBERS:
                if name in by_name:
                    by_name[name] = _floats(by_name[name], None)
        except (TypeError, ValueError):
            raise damaged("a time or a list of scopes is malformed") from None
        # Every scopes left is a list of text or null (the rows are checked above), one list per row.
        scopes = by_name.get("scopes")
        by_name["scopes"] = [[] for _ in range(count)] if scopes is None else [[] if x is None else x
                                                                               for x in scopes]
        defaults = _record_defaults()
        columns = [repeat("") if name == "source" else by_name.get(name) or [defaults[name]] * count
                   for name in _INIT_ORDER]
        # Positional __init__ calls: faster than filling each record's __dict__, and no dict per record.
        records: list[TokenRecord] = list(starmap(TokenRecord, zip(*columns)))
        created, updated = by_name.get("created_by"), by_name.get("updated_by")
        authors: dict[str, tuple[str | None, str | None]] = {}
        if created is not None or updated is not None:
            authors = dict(zip(uids, zip(created or [None] * count, updated or [None] * count)))
    created_at = doc.get("created_at")
    if type(created_at) not in (int, float) or not EARLIEST <= created_at <= LATEST:
        created_at = 0.0   # unknown: the plan then leaves out "made ..."
    source = doc.get("source")
    return BackupContents(path=where, header=header, created_at=float(created_at),
                          source=source if isinstance(source, str) and len(source) <= 40 else "?",
                          records=records, authors=authors,
                          refused=refused_ids)


def _floats(column: list, none: float | None) -> list:
    """The column with every number a float and null as ``none``; itself when it already is."""
    kinds = set(map(type, column))
    if kinds <= {float} or (none is None and kinds <= {float, type(None)}):
        return column
    return [none if x is None else float(x) for x in column]


def _ids_ok(uids: list) -> bool:
    """Every id good, judged at C speed; False means "look id by id"."""
    if not set(map(type, uids)) <= {str} or min(map(len, uids), default=1) < 1 \
            or max(map(len, uids), default=0) > USER_ID_MAX:
        return False
    joined = "\n".join(uids)
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _CONTROL.search(joined.replace("\n", "")) is None


def _refused_rows(by_name: dict[str, list], count: int) -> dict[int, str]:
    """``{row: why}`` for rows whose user id breaks the rule (``users``) or whose values are
    out of type or range (``tokens.check_values``, the field named)."""
    uids = by_name["user_id"]
    refused = {} if _ids_ok(uids) else {i: f"user id {problem}" for i, uid in enumerate(uids)
                                        if (problem := user_id_problem(uid)) is not None}
    for name in AUTHOR_FIELDS:
        for i, value in enumerate(by_name.get(name) or ()):
            if i not in refused and value is not None and (type(value) is not str or len(value) > TEXT_MAX):
                refused[i] = f"{name} is not text of at most {TEXT_MAX} characters"
    values = {name: col for name, col in by_name.items() if name in RECORD_FIELDS and name != "user_id"}
    for i, why in check_columns(values, count).items():
        refused.setdefault(i, why)
    return refused
