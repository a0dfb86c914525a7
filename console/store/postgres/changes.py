"""The change feed on PostgreSQL: which users changed since a cursor, in one round trip.

Triggers (migration 0005) note every changed or deleted user in ``"LiteLLM_ClaudeOAuthChanges"``
with the writing transaction's id. The cursor is the oldest transaction id still running when
the reader last looked (``pg_snapshot_xmin``): every transaction below it had finished, so its
rows were seen; rows of transactions at or above it are read again. A writer that commits after
a later one is therefore never skipped, whatever the order of commits. An idle read returns one
row and no user.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from ...tokens import HIDDEN
from ..base import Changes
from .sql import _TAIL, KEY_ID, KEY_ID_INDEX, TOKENS

CHANGES = '"LiteLLM_ClaudeOAuthChanges"'
RETAIN = "10 minutes"      # rows older than this are pruned ...
TRUST_FOR = 300.0          # ... so a cursor older than this (seconds) lists everything again
PRUNE_EVERY = 60.0         # one reader's prune, at most this often (inside its read)

CURSOR = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
# Columns 0-20 are the listing's own (a listed record reads them: the fields, then the key id
# the tokens are under); then the cursor, whether the row is a change at all, and the changed
# user (NULL with hit: everything).
_READ = f"""s AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin),
c AS (SELECT user_id, array_agg(seq) AS seqs FROM {CHANGES} WHERE tx >= $1::text::xid8 GROUP BY user_id)
SELECT t.user_id, '{HIDDEN}', CASE WHEN t.refresh_token_encrypted IS NULL THEN NULL ELSE '{HIDDEN}' END,
    {_TAIL}, {KEY_ID}, s.xmin, c.hit, c.user_id, c.seqs
FROM s LEFT JOIN (SELECT true AS hit, user_id, seqs FROM c) c ON true
    LEFT JOIN {TOKENS} t ON t.user_id = c.user_id"""
CHANGES_SINCE = f"WITH {_READ}"
CHANGES_SINCE_PRUNING = f"""WITH p AS (DELETE FROM {CHANGES} WHERE changed_at < now() - interval '{RETAIN}'),
{_READ}"""
_XMIN, _HIT, _CHANGED, _SEQS = KEY_ID_INDEX + 1, KEY_ID_INDEX + 2, KEY_ID_INDEX + 3, KEY_ID_INDEX + 4


class ChangeFeed:
    """``change_cursor`` and ``changes_since`` for ``PostgresTier``."""

    CAN_WATCH = True

    attempt: Callable[..., Awaitable[Any]]
    fetch_listed: Callable[..., Awaitable[list]]
    _pruned_at: float = 0.0

    async def change_cursor(self) -> tuple[str, float, frozenset]:
        """(oldest running transaction id, when read, the "everything" rows already acted on)."""
        xmin = await self.attempt(lambda conn: conn.fetchval(CURSOR))
        return xmin, time.monotonic(), frozenset()

    async def changes_since(self, cursor: tuple[str, float, frozenset]) -> Changes:
        xmin, taken, handled = cursor
        now = time.monotonic()
        if now - taken > TRUST_FOR:   # rows it needs may have been pruned
            return Changes(await self.change_cursor(), everything=True)
        sql = CHANGES_SINCE
        if now - self._pruned_at > PRUNE_EVERY:
            self._pruned_at, sql = now, CHANGES_SINCE_PRUNING
        rows = await self.fetch_listed(sql, xmin)
        # "Everything" rows stay in the window while an older transaction runs anywhere on the
        # server: each is acted on once (a listing taken after it saw what it stands for).
        marks = frozenset(seq for row in rows if row[_HIT] and row[_CHANGED] is None for seq in row[_SEQS])
        fresh = (rows[0][_XMIN], now, marks)
        if marks - handled:
            return Changes(fresh, everything=True)
        present = [row for row in rows if row[0] is not None]
        removed = [row[_CHANGED] for row in rows if row[0] is None and row[_CHANGED] is not None]
        return Changes(fresh, present, removed)
