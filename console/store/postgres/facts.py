"""Usage and profile facts on PostgreSQL: their own table, and the polite per-user lease.

A lease is ``usage_next_at``: claiming it moves it one interval ahead in the same statement
that checks it, so every process and replica together asks Claude at most once per interval
per user. The refresher claims many due users at once with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from ...errors import ConsoleError
from .sql import SELECT_ALL_SECRETS, TOKENS

FACTS = '"LiteLLM_ClaudeOAuthUsage"'

# $1 user, $2 interval s, $3 owner: true when this caller may ask now.
CLAIM_ONE = f"""INSERT INTO {FACTS} AS f (user_id, usage_next_at, usage_claimed_by)
VALUES ($1, now() + make_interval(secs => $2::float8), $3)
ON CONFLICT (user_id) DO UPDATE SET usage_next_at = EXCLUDED.usage_next_at,
    usage_claimed_by = EXCLUDED.usage_claimed_by
WHERE f.usage_next_at IS NULL OR f.usage_next_at <= now()
RETURNING user_id"""
# Every token user that can be asked gets a row, so due users are found in one table.
ADD_MISSING = f"""INSERT INTO {FACTS} (user_id)
SELECT user_id FROM {TOKENS} t WHERE NOT t.needs_login
  AND NOT EXISTS (SELECT 1 FROM {FACTS} f WHERE f.user_id = t.user_id)
ON CONFLICT DO NOTHING"""
# $1 limit, $2 interval s, $3 owner.
CLAIM_DUE_USAGE = f"""WITH due AS (
    SELECT f.user_id FROM {FACTS} f JOIN {TOKENS} t ON t.user_id = f.user_id
    WHERE (f.usage_next_at IS NULL OR f.usage_next_at <= now())
      AND NOT t.needs_login AND 'user:profile' = ANY(t.scopes)
    ORDER BY f.usage_next_at NULLS FIRST
    LIMIT $1
    FOR UPDATE OF f SKIP LOCKED
)
UPDATE {FACTS} f SET usage_next_at = now() + make_interval(secs => $2::float8), usage_claimed_by = $3
FROM due WHERE f.user_id = due.user_id
RETURNING f.user_id"""
# $1 user, $2 epoch seconds: not before then (a 429's retry-after).
DEFER = f"""INSERT INTO {FACTS} AS f (user_id, usage_next_at) VALUES ($1, to_timestamp($2::float8))
ON CONFLICT (user_id) DO UPDATE SET usage_next_at = GREATEST(f.usage_next_at, EXCLUDED.usage_next_at)"""
# $1 user, $2 jsonb changes: merged into what is there.
UPDATE = f"""INSERT INTO {FACTS} AS f (user_id, facts) VALUES ($1, $2::jsonb)
ON CONFLICT (user_id) DO UPDATE SET facts = f.facts || EXCLUDED.facts, updated_at = CURRENT_TIMESTAMP
RETURNING f.facts, date_part('epoch', f.usage_next_at)"""
SELECT_SOME = f"""SELECT user_id, facts, date_part('epoch', usage_next_at) FROM {FACTS}
WHERE user_id = ANY($1::varchar[])"""
SELECT_ALL = f"SELECT user_id, facts, date_part('epoch', usage_next_at) FROM {FACTS}"
# What a board row shows: columns the database keeps from the facts (migration 0007), so no
# facts document crosses the wire or is parsed for 100 000 users.
SELECT_BRIEF = f"SELECT user_id, organization_type, rate_limit_tier, usage_5h, usage_7d, usage_peak FROM {FACTS}"
SELECT_BRIEF_SOME = SELECT_BRIEF + " WHERE user_id = ANY($1::varchar[])"
# $1 epoch seconds (migration 0008's index): the users whose facts were written since then.
SELECT_BRIEF_SINCE = SELECT_BRIEF + " WHERE updated_at >= to_timestamp($1::float8)"
SERVER_NOW = "SELECT date_part('epoch', statement_timestamp())"
DELETE = f"DELETE FROM {FACTS} WHERE user_id = $1"
# $1 users, $2 their jsonb changes (same order): a polling batch's answers in one statement.
UPDATE_MANY = f"""INSERT INTO {FACTS} AS f (user_id, facts)
SELECT u, c FROM unnest($1::varchar[], $2::jsonb[]) AS x(u, c)
ON CONFLICT (user_id) DO UPDATE SET facts = f.facts || EXCLUDED.facts, updated_at = CURRENT_TIMESTAMP"""
RECORDS_OF = SELECT_ALL_SECRETS + " WHERE user_id = ANY($1::varchar[])"


def _row(user_id: str, facts: Any, next_at: float | None) -> dict[str, Any]:
    data = json.loads(facts) if isinstance(facts, str) else dict(facts or {})
    data["user_id"] = user_id
    data["next_usage_at"] = next_at
    return data


class FactsPaths:
    """The facts methods of ``PostgresTier`` (see ``Tier.load_facts``)."""

    attempt: Callable[..., Awaitable[Any]]
    CAN_KEEP_FACTS = CAN_BRIEF_FACTS = True

    async def load_facts(self, user_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        if user_ids is None:
            rows = await self.attempt(lambda conn: conn.fetch(SELECT_ALL))
        else:
            rows = await self.attempt(lambda conn: conn.fetch(SELECT_SOME, list(user_ids)))
        return {r[0]: _row(r[0], r[1], r[2]) for r in rows}

    async def load_brief_facts(self, user_ids: list[str] | None = None) -> list[tuple]:
        if user_ids is None:
            rows = await self.attempt(lambda conn: conn.fetch(SELECT_BRIEF))
        else:
            rows = await self.attempt(lambda conn: conn.fetch(SELECT_BRIEF_SOME, list(user_ids)))
        return rows

    async def brief_facts_changed(self, since: float | None) -> tuple[float, list[tuple]]:
        async def read(conn):
            mark = await conn.fetchval(SERVER_NOW)   # before the read: nothing after it is missed
            if since is None:
                return mark, await conn.fetch(SELECT_BRIEF)
            return mark, await conn.fetch(SELECT_BRIEF_SINCE, float(since))

        return await self.attempt(read)

    async def update_facts(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({k: v for k, v in changes.items() if k not in ("user_id", "next_usage_at")})
        row = await self.attempt(lambda conn: conn.fetchrow(UPDATE, user_id, body))
        return _row(user_id, row[0], row[1])

    async def update_facts_many(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        users = [u for u, _ in changes]
        bodies = [json.dumps({k: v for k, v in c.items() if k not in ("user_id", "next_usage_at")})
                  for _, c in changes]
        await self.attempt(lambda conn: conn.execute(UPDATE_MANY, users, bodies))

    async def records_of(self, user_ids: list[str]) -> list:
        """Token records (decrypted) of a claimed batch, one query; unreadable rows are left out."""
        rows = await self.attempt(lambda conn: conn.fetch(RECORDS_OF, list(user_ids)))
        out = []
        for row in rows:
            try:
                out.append(self.decode_row(row))
            except ConsoleError:
                continue
        return out

    async def claim_fetch(self, user_id: str, *, interval: float, owner: str) -> bool:
        got = await self.attempt(lambda conn: conn.fetchval(CLAIM_ONE, user_id, float(interval), owner))
        return got is not None

    async def claim_due_usage(self, *, limit: int, interval: float, owner: str,
                              enroll: bool = True) -> list[str]:
        async def claim(conn):
            if enroll:  # users logged in since the last pass get their row
                await conn.execute(ADD_MISSING)
            return await conn.fetch(CLAIM_DUE_USAGE, int(limit), float(interval), owner)

        return [r[0] for r in await self.attempt(claim)]

    async def defer_fetch(self, user_id: str, until: float) -> None:
        await self.attempt(lambda conn: conn.execute(DEFER, user_id, float(until)))

    async def drop_facts(self, user_id: str) -> None:
        await self.attempt(lambda conn: conn.execute(DELETE, user_id))
