"""The board stays live without re-reading everyone: it asks the store what changed.

A change made by another service instance (another replica, another console) must reach an
open board within a second; a delete must disappear; a poll with nothing changed must cost one
statement on PostgreSQL and no listing on the file tier.
"""

from __future__ import annotations

import time

import pytest

from console.app import ConsoleApp
from console.config import load_settings
from console.service import AuthService
from console.tokens import TokenRecord
from console.widgets.board_view import BoardView

from support.screen_cells import screen_text

SIZE = (120, 40)


async def wait_until(pilot, condition, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` holds (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{screen_text(pilot.app)}")
        await pilot.pause(0.02)
    return time.monotonic() - start


def record(uid: str, expires_in: float = 3600.0) -> TokenRecord:
    now = time.time()
    return TokenRecord(user_id=uid, access_token=f"sk-ant-oat01-{uid}", refresh_token=f"sk-ant-ort01-{uid}",
                       expires_at=now + expires_in, account_email=f"{uid}@example.com", created_at=now)


class StatementCounter:
    """Counts the statements a tier sends, by wrapping the connection its ``attempt`` hands out."""

    def __init__(self, tier) -> None:
        self.statements: list[str] = []
        original = tier.attempt
        counter = self

        class Counted:
            def __init__(self, conn) -> None:
                self._conn = conn

            def __getattr__(self, name):
                attr = getattr(self._conn, name)
                if name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
                    def counted(sql, *args, **kwargs):
                        counter.statements.append(sql)
                        return attr(sql, *args, **kwargs)
                    return counted
                return attr

        async def attempt(fn, **kwargs):
            return await original(lambda conn: fn(Counted(conn)), **kwargs)

        tier.attempt = attempt


@pytest.fixture
async def pg_services(pg_env):
    """Two service instances on one database: the board's, and another replica's."""
    ours, theirs = AuthService(load_settings()), AuthService(load_settings())
    yield ours, theirs
    await ours.aclose()
    await theirs.aclose()


async def test_another_replicas_changes_reach_the_board_within_a_second(pg_services):
    ours, theirs = pg_services
    await theirs.store.put(record("alice"))
    await theirs.store.put(record("bob"))
    app = ConsoleApp(ours, refresh_interval=2.0)
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen.query_one(BoardView)
        await wait_until(pilot, lambda: board.loaded and board.total == 2, 10, "the first listing")
        await pilot.pause(0.3)

        await theirs.store.put(record("carol"))                  # a new user
        took = await wait_until(pilot, lambda: "carol" in board.view, 1.0, "carol to appear")
        assert took <= 1.0

        bob = await theirs.get_record("bob")                     # a changed user
        await theirs.store.put(bob.evolve(expires_at=bob.expires_at + 7200, refresh_count=41),
                               expected_version=bob.version)
        await wait_until(pilot, lambda: board.record("bob").refresh_count == 41, 1.0, "bob's change")

        assert await theirs.logout("alice")                      # a delete
        await wait_until(pilot, lambda: "alice" not in board.view, 1.0, "alice to disappear")
        assert sorted(board.view) == ["bob", "carol"]
        assert "alice" not in screen_text(app)


async def test_a_raw_sql_write_from_anywhere_reaches_the_board(pg_services, pg_dsn):
    """Any writer counts, not only this code: the feed is kept by the database itself."""
    from asyncpg import connect

    ours, theirs = pg_services
    await theirs.store.put(record("dave"))
    app = ConsoleApp(ours, refresh_interval=2.0)
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen.query_one(BoardView)
        await wait_until(pilot, lambda: board.loaded and board.total == 1, 10, "the first listing")
        conn = await connect(pg_dsn)
        try:
            await conn.execute("""UPDATE "LiteLLM_ClaudeOAuthTokens" SET refresh_count = 7,
                version = version + 1 WHERE user_id = 'dave'""")
            await wait_until(pilot, lambda: board.record("dave").refresh_count == 7, 1.0, "dave's change")
            await conn.execute("""DELETE FROM "LiteLLM_ClaudeOAuthTokens" WHERE user_id = 'dave'""")
            await wait_until(pilot, lambda: board.total == 0, 1.0, "dave to disappear")
        finally:
            await conn.close()


async def test_an_idle_poll_is_one_statement_and_no_listing(pg_services):
    ours, theirs = pg_services
    for uid in ("erin", "frank", "grace"):
        await theirs.store.put(record(uid))
    app = ConsoleApp(ours, refresh_interval=2.0)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        board = screen.query_one(BoardView)
        await wait_until(pilot, lambda: board.loaded and board.total == 3 and screen._cursor is not None,
                         10, "the first listing")
        # After it, once: the stored usage, and a usage request for each row on screen.
        await wait_until(pilot, lambda: not any(w.is_running for w in app.workers if w.group.startswith("usage")),
                         10, "the board's usage reads and requests")
        polls: list[float] = []
        asked = ours.changes_since

        async def counting(cursor):
            polls.append(time.monotonic())
            return await asked(cursor)

        ours.changes_since = counting
        counter = StatementCounter(ours.store.primary)
        listed = []
        original_pages = ours.store.list_pages
        ours.store.list_pages = lambda *a, **k: (listed.append(1), original_pages(*a, **k))[1]
        await pilot.pause(2.2)                                   # idle: several polls, nothing changed
        assert len(polls) >= 3, "the board must keep asking (every half second)"
        # One statement per poll (a poll still in flight may have sent its statement already).
        assert len(polls) - 1 <= len(counter.statements) <= len(polls), counter.statements
        assert all("LiteLLM_ClaudeOAuthChanges" in sql for sql in counter.statements)
        assert not listed, "an idle poll must not list every user"


def usage_facts(five_hour: float) -> dict:
    from console.usage import Usage, Window

    return {"usage": Usage((Window("five_hour", "5h", five_hour, time.time() + 3600),)).to_dict(),
            "usage_fetched_at": time.time(), "usage_fetched_by": "test"}


async def test_usage_written_elsewhere_reaches_the_board_and_only_it_is_read_again(pg_services, monkeypatch):
    """Every few seconds the board reads the usage written since its last read, not everyone's:
    another replica's answer shows on the board, and the reads after the first return only
    the users whose facts changed."""
    from console.screens import board as board_screen

    monkeypatch.setattr(board_screen, "USAGE_EVERY", 0.3)
    monkeypatch.setattr(board_screen, "WATCH_EVERY", 0.1)
    monkeypatch.setattr(board_screen, "USAGE_OVERLAP", 0.0)   # (60 s would read all three again)
    ours, theirs = pg_services
    for n, uid in enumerate(("ivan", "judy", "ken")):
        await theirs.store.put(record(uid, expires_in=3600 + n))
        await theirs.store.update_facts(uid, usage_facts(10.0 + n))
    reads: list[tuple[float | None, set[str]]] = []
    original = ours.usage_cells_changed

    async def spied(since=None):
        mark, cells = await original(since)
        reads.append((since, set(cells)))
        return mark, cells

    ours.usage_cells_changed = spied
    app = ConsoleApp(ours, refresh_interval=2.0)
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen.query_one(BoardView)
        await wait_until(pilot, lambda: len(board._usage) == 3, 10, "everyone's usage")
        assert reads[0] == (None, {"ivan", "judy", "ken"})
        await wait_until(pilot, lambda: len(reads) >= 2, 5, "a second usage read")
        await theirs.store.update_facts("judy", usage_facts(97.0))
        await wait_until(pilot, lambda: board._usage["judy"].p5h == 97.0, 5, "judy's new usage")
        later = reads[1:]
        assert all(since is not None for since, _ in later), "after the first, a read is of what changed"
        assert later[0][1] == set(), "nothing was written between the first two reads"
        assert {"judy"} in [users for _, users in later] and all(users <= {"judy"} for _, users in later)
        assert board.usage_high() == 1 and board._usage["ivan"].p5h == 10.0


async def test_the_file_tier_is_watched_by_its_stat(service, settings):
    """File store: another process's write shows within a second; an idle poll lists nothing."""
    await service.store.put(record("heidi"))
    other = AuthService(settings)
    try:
        app = ConsoleApp(service, refresh_interval=2.0)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            board = screen.query_one(BoardView)
            await wait_until(pilot, lambda: board.loaded and board.total == 1 and screen._cursor is not None,
                             10, "the first listing")
            listed = []
            primary = service.store.primary
            original = primary.list

            async def counting(*args, **kwargs):
                listed.append(1)
                return await original(*args, **kwargs)

            primary.list = counting
            await pilot.pause(1.2)
            assert not listed, "nothing changed: the token file must not be read again"
            await other.store.put(record("ivan"))
            await wait_until(pilot, lambda: "ivan" in board.view, 1.0, "ivan to appear")
            assert await other.logout("heidi")
            await wait_until(pilot, lambda: "heidi" not in board.view, 1.0, "heidi to disappear")
    finally:
        await other.aclose()
