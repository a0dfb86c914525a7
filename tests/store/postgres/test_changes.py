"""The PostgreSQL change feed: which users changed since a cursor, whatever order writers commit in."""

from __future__ import annotations

import dataclasses
import time

from console.store.postgres import TOKENS
from console.tokens import HIDDEN, TokenRecord


def record(uid: str) -> TokenRecord:
    now = time.time()
    return TokenRecord(user_id=uid, access_token=f"sk-ant-oat01-{uid}", refresh_token=f"sk-ant-ort01-{uid}",
                       expires_at=now + 3600, created_at=now)


async def test_changes_and_deletes_since_a_cursor(tier):
    await tier.put(record("alice"))
    await tier.put(record("bob"))
    cursor = await tier.change_cursor()
    idle = await tier.changes_since(cursor)
    # Other work on the server can keep old transactions open: a cursor then re-reads rows it
    # saw before (never skips one). So "nothing new" means: no user it did not write.
    assert not idle.everything and idle.removed == []
    assert {r.user_id for r in idle.records} <= {"alice", "bob"}

    bob = await tier.get("bob")
    await tier.put(bob.evolve(refresh_count=5), expected_version=bob.version)
    await tier.delete("alice")
    await tier.put(record("carol"))
    seen = await tier.changes_since(idle.cursor)
    assert sorted(r.user_id for r in seen.records) == ["bob", "carol"]
    assert seen.removed == ["alice"]
    assert {r.user_id: r.refresh_count for r in seen.records}["bob"] == 5
    assert all(r.access_token == HIDDEN for r in seen.records), "the feed never carries tokens"
    # Read from the newest cursor, nothing is new (a cursor may re-read, never skip).
    again = await tier.changes_since(seen.cursor)
    assert not again.everything and set(again.removed) <= {"alice"}
    assert {r.user_id for r in again.records} <= {"alice", "bob", "carol"}


async def test_a_writer_that_commits_late_is_not_skipped(tier, pg_dsn, connect):
    await tier.put(record("early"))
    await tier.put(record("late"))
    cursor = await tier.change_cursor()
    slow = await connect(pg_dsn)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute(f"UPDATE {TOKENS} SET refresh_count = 9, version = version + 1 WHERE user_id = 'late'")
        early = await tier.get("early")    # a later transaction commits first
        await tier.put(early.evolve(refresh_count=3), expected_version=early.version)
        first = await tier.changes_since(cursor)
        assert "early" in [r.user_id for r in first.records]
        assert {r.user_id: r.refresh_count for r in first.records}.get("late", 0) == 0  # not committed
        await transaction.commit()
    finally:
        await slow.close()
    second = await tier.changes_since(first.cursor)
    assert "late" in [r.user_id for r in second.records]
    assert {r.user_id: r.refresh_count for r in second.records}["late"] == 9


async def test_a_bulk_write_says_list_everything(tier):
    cursor = await tier.change_cursor()
    await tier.put_many([record(f"user{i:04d}") for i in range(1500)])
    changes = await tier.changes_since(cursor)
    assert changes.everything


async def test_claims_and_key_rotation_are_not_changes(tier, pg_dsn, connect):
    await tier.put(record("judy"))
    cursor = await tier.change_cursor()
    conn = await connect(pg_dsn)
    try:
        await conn.execute(f"UPDATE {TOKENS} SET refresh_claimed_until = now(), refresh_claimed_by = 'x'")
    finally:
        await conn.close()
    changes = await tier.changes_since(cursor)
    assert not changes.everything and changes.removed == []
    # (judy's own insert may be re-read while older transactions run elsewhere; the claim adds nothing)
    conn = await connect(pg_dsn)
    try:
        noted = await conn.fetchval('SELECT count(*) FROM "LiteLLM_ClaudeOAuthChanges"')
    finally:
        await conn.close()
    assert noted == 1, "only judy's insert is noted, not the claim"


async def test_a_list_everything_mark_is_acted_on_once(tier, pg_dsn, connect):
    """While an old transaction stays open elsewhere, the mark stays in the window: a reader
    that listed everything because of it must not be told to list everything again."""
    cursor = await tier.change_cursor()
    old = await connect(pg_dsn)
    try:
        transaction = old.transaction()
        await transaction.start()
        await old.fetchval("SELECT pg_current_xact_id()")         # holds the oldest transaction id
        await tier.put_many([record(f"user{i:04d}") for i in range(1500)])
        first = await tier.changes_since(cursor)
        assert first.everything
        second = await tier.changes_since(first.cursor)
        assert not second.everything, "the same mark must not ask for a second full listing"
        await transaction.rollback()
    finally:
        await old.close()


async def test_the_feed_marks_rows_under_a_key_that_is_not_configured(tier, pg_dsn):
    from console.crypto import Keyring, generate_key
    from console.store.postgres import PostgresTier

    other_key = generate_key()
    other = PostgresTier(pg_dsn, Keyring.from_spec(other_key))
    try:
        await tier.put(record("alice"))
        cursor = await tier.change_cursor()
        await other.put(record("mallory"))     # written under a key this tier does not have
        await tier.put(record("bob"))
        seen = await tier.changes_since(cursor)
    finally:
        await other.close()
    locked = {r.user_id: r.locked for r in seen.records}
    assert locked["mallory"] == Keyring.from_spec(other_key).primary_id
    assert locked["bob"] is None and locked.get("alice") is None
    assert {r.user_id: r.locked for r in await tier.list()} == locked | {"alice": None}


async def test_a_listed_page_decides_its_locks_at_once_as_each_row_would(tier, pg_dsn, connect):
    """The board decides a page's statuses in bulk; a listed row's class answers "is any row
    locked?" for the whole page from the key ids. Rows under the configured key, another key,
    a legacy Fernet value and no value at all must get the same status as row by row."""
    from console.crypto import Keyring, generate_key
    from console.store.postgres import PostgresTier
    from console.tokens import Status, token_status, token_statuses

    now = time.time()
    for uid, left in (("alice", 3600), ("amy", 60), ("ann", -60)):
        await tier.put(dataclasses.replace(record(uid), expires_at=now + left))
    mine = await tier.list()
    assert type(mine[0]).none_locked(mine)
    assert token_statuses(mine, now) == [token_status(r, now) for r in mine]
    assert {r.user_id: s for r, s in zip(mine, token_statuses(mine, now))} == {
        "alice": Status.ACTIVE, "amy": Status.EXPIRING, "ann": Status.EXPIRED_REFRESHABLE}

    other = PostgresTier(pg_dsn, Keyring.from_spec(generate_key()))
    try:
        await other.put(record("mallory"))     # under a key this tier does not have
    finally:
        await other.close()
    await tier.put(record("fern"))
    conn = await connect(pg_dsn)
    try:   # a legacy Fernet token: readable only when some key is configured
        await conn.execute(f"UPDATE {TOKENS} SET access_token_encrypted = 'gAAAAAlegacy' WHERE user_id = 'fern'")
    finally:
        await conn.close()
    listed = await tier.list()
    assert not type(listed[0]).none_locked(listed)
    statuses = dict(zip((r.user_id for r in listed), token_statuses(listed, now)))
    assert statuses == {r.user_id: token_status(r, now) for r in listed}
    assert statuses["mallory"] == Status.LOCKED and statuses["fern"] == Status.ACTIVE
    unlocked = [r for r in listed if r.user_id != "mallory"]
    assert type(unlocked[0]).none_locked(unlocked)
