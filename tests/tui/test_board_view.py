"""The board's table on its own: its incremental order must always equal a fresh sort.

Rows are moved with bisect (few changes), merged (many), and moved again when time alone
changes their status; after every step the view is compared with one computed from scratch.
Also: the store's paged listing that lets the board stream 100 000 users.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from textual.app import App

from console.config import load_settings
from console.crypto import generate_key
from console.service import AuthService
from console.tokens import TokenRecord, token_status
from console.widgets.board_view import _PACK_CHUNK, SORT_KEYS, BoardView, _search_text, _sort_key

from support.tui import wait_until

NOW = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make(uid: str, rng: random.Random, **changes) -> TokenRecord:
    record = TokenRecord(
        user_id=uid, access_token="sk-ant-oat01-hidden-xxxx",
        refresh_token=None if rng.random() < 0.1 else "sk-ant-ort01-hidden-yyyy",
        expires_at=NOW + rng.choice([-600, 60, 200, 290, 310, 900, 3600, 28800]),
        scopes=rng.choice([["user:inference"], ["user:inference", "user:profile"]]),
        account_email=rng.choice([None, f"{uid}@example.com", f"ops+{uid}@corp.example"]),
        needs_login=rng.random() < 0.1, refresh_count=rng.randrange(5),
        last_used=rng.choice([None, NOW - 30, NOW - 4000]), source=rng.choice(["file", "postgres"]),
        version=1)
    return record.evolve(**changes)


def expected_view(board: BoardView, clock: Clock) -> list[str]:
    records = {uid: board.record(uid) for uid in board._records}
    status = {uid: token_status(r, clock(), 300.0) for uid, r in records.items()}
    order = sorted(records, key=_sort_key(board.sort_key, records, status))
    terms = board.filter_text.lower().split()
    shown = [uid for uid in order if all(t in _search_text(records[uid], status[uid]) for t in terms)]
    return shown[::-1] if board.sort_reverse else shown


class Host(App):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def compose(self):
        yield BoardView(clock=self.clock)


@contextlib.asynccontextmanager
async def hosted(**run):
    """The board alone on a 100x30 screen, on a clock the test moves: (pilot, board, clock)."""
    clock = Clock()
    app = Host(clock)
    async with app.run_test(size=(100, 30), **run) as pilot:
        yield pilot, app.query_one(BoardView), clock


async def test_incremental_order_matches_a_fresh_sort():
    rng = random.Random(4)
    async with hosted() as (pilot, board, clock):
        users = {f"u{i:03d}": make(f"u{i:03d}", rng) for i in range(300)}
        board.set_records(list(users.values())[:40], complete=False)      # a first page
        board.set_records(list(users.values()))                           # then the rest (a merge)
        assert board.view == expected_view(board, clock)
        for step in range(60):
            action = rng.random()
            if action < 0.5:      # a few rows change (bisect path) or many (merge path)
                for uid in rng.sample(sorted(users), rng.choice([1, 3, 80])):
                    users[uid] = make(uid, rng, version=users[uid].version + 1)
            elif action < 0.6:    # users come and go
                for uid in rng.sample(sorted(users), 5):
                    del users[uid]
                for i in range(5):
                    uid = f"n{step:02d}{i}"
                    users[uid] = make(uid, rng)
            elif action < 0.75:
                board.sort_by(rng.choice(SORT_KEYS))
            elif action < 0.85:
                board.set_filter(rng.choice(["", "u0", "u01", "corp", "expiring", "needs", "file u1"]))
            else:                 # time passes: rows cross the refresh buffer or expire
                clock.now += rng.choice([15, 120, 400])
                board._tick()
            board.set_records(list(users.values()))
            assert board.view == expected_view(board, clock), f"step {step}"
            assert board.total == len(users)
            assert sum(board.counts().values()) == len(users)
        await pilot.pause()


async def test_time_alone_moves_a_row_up_the_urgency_order():
    async with hosted() as (pilot, board, clock):
        calm = TokenRecord("calm", "a", "r", NOW + 9000, version=1)
        soon = TokenRecord("soon", "a", "r", NOW + 400, version=1)     # active for 100 more seconds
        board.set_records([calm, soon])
        assert board.view == ["soon", "calm"]          # both active: sooner expiry first
        board.sort_by("user")
        board.sort_by("status")
        board.select_user("calm")
        clock.now += 150                               # soon is now inside the refresh buffer
        board._tick()
        assert str(board.status_of("soon").value) == "expiring"
        clock.now += 300                               # and now expired
        board._tick()
        assert board.status_of("soon").value == "expired_refreshable"
        assert board.view == ["soon", "calm"] and board.selected_user_id == "calm"
        assert board.counts()[board.status_of("soon")] == 1
        await pilot.pause()


async def test_a_streamed_listing_still_moves_rows_when_time_alone_changes_them():
    """Pages of a listing skip the status edges (made once, at its end): a row whose edge
    passed during the listing, or after it, must still reach its new status and place."""
    rng = random.Random(8)
    async with hosted() as (pilot, board, clock):
        users = [make(f"u{i:04d}", rng) for i in range(600)]
        board.set_records(users[:100], complete=False)     # the first page, before the stream
        board.begin_stream()
        board.set_records(users[100:350], complete=False)
        clock.now += 120                                   # time passes while pages arrive
        board.set_records(users[350:], complete=False)
        board.set_records([users[7].evolve(expires_at=clock.now + 320, version=2)] + users[500:580],
                          complete=False)                  # a row already shown changes mid-stream
        board.end_stream()
        for step in (0, 30, 200, 400):
            clock.now += step
            board._tick()
            assert board.view == expected_view(board, clock), f"+{step} s"
            assert all(board.status_of(uid) == token_status(board.record(uid), clock(), 300.0)
                       for uid in board.view)
        await pilot.pause()


async def test_the_scrollbar_follows_the_row_count_with_and_without_a_layout(monkeypatch):
    """A filter that changes the row count but keeps the scrollbar moves only the scrollbar (no
    layout of the screen); one that makes the rows fit, or overflow again, lays it out. Either
    way the scrollable height, the scrollbar and the offset must match the rows shown."""
    from textual.screen import Screen

    layouts = []
    original = Screen._refresh_layout
    monkeypatch.setattr(Screen, "_refresh_layout", lambda self, *a, **k: (layouts.append(1), original(self, *a, **k)))
    rng = random.Random(9)
    async with hosted() as (pilot, board, clock):
        board.set_records([make(f"u{i:04d}", rng) for i in range(400)])
        await pilot.pause()
        board.select_user(board.view[-1])               # scrolled to the bottom
        await pilot.pause()

        def agrees() -> bool:
            rows = len(board.view) + 1
            bar = board.vertical_scrollbar
            return (board.virtual_size.height == rows and board.scroll_y <= board.max_scroll_y
                    and board.show_vertical_scrollbar == (rows > board.container_size.height)
                    and (not board.show_vertical_scrollbar or bar.window_virtual_size == rows))

        assert agrees() and board.scroll_y > 0
        for query, layout in (("u01", False), ("u00", False), ("u000", True), ("u0", True), ("", False)):
            before = len(layouts)
            board.set_filter(query)
            await pilot.pause()
            assert agrees(), query
            assert (len(layouts) > before) == layout, query
            if board.show_vertical_scrollbar:
                assert board.selected_user_id in board.view and board.cursor_row in range(
                    int(board.scroll_y), int(board.scroll_y) + board.container_size.height), query


async def packed(pilot, board: BoardView, timeout: float = 5.0) -> None:
    """Wait until no packing of the search texts is scheduled or under way."""
    await wait_until(pilot, lambda: board._pack_timer is None and board._pack_start is None,
                     "the search texts to be packed", timeout)


async def test_packed_search_texts_filter_the_same_after_loads_and_sorts():
    """Past 10 000 rows the search texts are re-packed (in steps) after a bulk load and a sort:
    filtering before, during and after must give the same view, and the texts, the dict and
    the view must end up sharing one copy (one row carries a NUL, which packing skips)."""
    rng = random.Random(11)
    async with hosted() as (pilot, board, clock):
        users = [make(f"u{i:05d}", rng) for i in range(12_500)]
        users[7] = users[7].evolve(account_email="odd\0mail@example.com")
        board.set_records(users[:6000], complete=False)
        board.set_records(users)
        board.set_filter("u01")
        await packed(pilot, board)                  # the pack after the bulk load
        for key in ("email", "user", "status"):
            board.sort_by(key)
            for query in ("", "u01", "u01 corp", "odd", "needs"):
                board.set_filter(query)
                assert board.view == expected_view(board, clock), (key, query)
        before = dict(board._text)
        await packed(pilot, board)                  # the pack after the last sort
        assert board.view == expected_view(board, clock)
        renewed = sum(board._text[uid] is not text for uid, text in before.items())
        assert renewed >= len(before) - _PACK_CHUNK   # all but the chunk holding the NUL
        board._pack_step()                          # a tick queued before the timer stopped
        board._pack_step()                          # is harmless
        order, texts, by_user = board._order, board._order_text, board._text
        assert all(texts[i] is by_user[uid] for i, uid in enumerate(order))   # no second copy
        assert all(board._view_text[i] is by_user[uid] for i, uid in enumerate(board.view))
        status = {uid: board.status_of(uid) for uid in order}
        assert all(by_user[uid] == _search_text(board.record(uid), status[uid]) for uid in order)


@pytest.fixture
async def pg_service(console_env, pg_dsn, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", generate_key())
    service = AuthService(load_settings())
    assert service.store.primary.name == "postgres"
    yield service
    await service.aclose()


async def test_paged_listing_streams_in_user_id_order_without_duplicates(pg_service):
    rng = random.Random(7)
    await pg_service.store.primary.put_many([make(f"user-{i:02d}", rng) for i in range(12)])
    file_tier = pg_service.store.tier("file")
    await file_tier.put_many([make("user-03", rng, account_email="old@file.example"),
                              make("zz-file-only", rng)])
    pages = [page async for page in pg_service.iter_users(5, first=2)]
    assert [len(page) for page in pages] == [2, 5, 5, 1]
    ids = [r.user_id for page in pages for r in page]
    assert ids == [f"user-{i:02d}" for i in range(12)] + ["zz-file-only"]
    by_id = {r.user_id: r for page in pages for r in page}
    assert by_id["user-03"].source == "postgres", "the database outranks the file"
    assert all(r.access_token == "<hidden>" for r in by_id.values())
    assert sorted(ids) == sorted(r.user_id for r in await pg_service.list_users())


async def test_filter_never_matches_across_two_rows_and_equals_a_scan():
    """The filter searches one joined text of every row: a term made of one row's end and the
    next row's start must not match, and every answer equals testing each row on its own,
    after changes, sorts and erasing back to an earlier query (answers are remembered)."""
    rng = random.Random(14)
    async with hosted() as (pilot, board, clock):
        users = {f"u{i:04d}": make(f"u{i:04d}", rng) for i in range(3000)}
        board.set_records(list(users.values()))
        board.sort_by("user")
        board._finish_texts()   # (a bulk change leaves them to be made when first needed)
        texts = [board._text[uid] for uid in board._order]
        # The end of each row's text joined to the start of the next: found only across the seam.
        seams = [a[-3:] + b[:3] for a, b in zip(texts, texts[1:])]
        seams = [s for s in seams if " " not in s and not any(s in t for t in texts)][:20]
        assert seams, "the fixture must produce terms that exist only across a row boundary"
        for seam in seams:
            board.set_filter(seam)
            assert board.view == [], f"{seam!r} matched across two rows"
        queries = ["u00", "u001", "u0012", "u001", "u00", "corp", "corp u02", "ops+u01", "example u1",
                   "expiring", "needs login", "inference profile", "postgres u2", "zzz", "u", "u0"]
        for step in range(40):
            board.set_filter(rng.choice(queries))
            assert board.view == expected_view(board, clock), f"step {step}: {board.filter_text!r}"
            action = rng.random()
            if action < 0.3:
                for uid in rng.sample(sorted(users), rng.choice([1, 4, 200])):
                    users[uid] = make(uid, rng, version=users[uid].version + 1,
                                      account_email=f"{rng.choice(['ops', 'dev'])}+{uid}@corp.example")
                board.set_records(list(users.values()))
            elif action < 0.4:
                board.sort_by(rng.choice(SORT_KEYS))
            elif action < 0.5:
                gone = rng.sample(sorted(users), 3)
                for uid in gone:
                    del users[uid]
                board.remove(gone)
            assert board.view == expected_view(board, clock), f"step {step} after a change"
        await pilot.pause()


async def test_gram_counts_answer_short_terms_and_stay_true_through_changes(monkeypatch):
    """Past the packing size the board counts each row's one- and two-character strings while
    idle: a term every row holds is dropped, one no row holds empties the view, and the
    counts follow later small changes (adds, edits, removals), so every filter still gives the
    view a row-by-row test gives."""
    import console.widgets.board_view as board_view

    monkeypatch.setattr(board_view, "_PACK_CHUNK", 300)
    monkeypatch.setattr(board_view, "_GRAM_CHUNK", 100)
    rng = random.Random(5)
    async with hosted() as (pilot, board, clock):
        users = [make(f"u{i:04d}", rng) for i in range(700)]
        board.set_records(users)
        await wait_until(pilot, lambda: board._grams is not None, "the gram counts", 10.0)
        grams = board._grams
        assert grams.rows == 700 and grams.rows_with("u0") == 700   # every user id starts "u0"
        queries = ("u", "u0", "u0 x", "zq", "q", "u06", "u0 corp", "needs", "e", "ex", "u01 a")

        def check(tag: str) -> None:
            for reverse in (False, True):
                board.sort_by("user", reverse=reverse)
                for query in queries:
                    board.set_filter(query)
                    assert board.view == expected_view(board, clock), (tag, reverse, query)
                board.set_filter("")

        check("loaded")
        board.set_records([users[1].evolve(account_email="zq@odd.example"),       # a new gram
                           make("x9999", rng)], complete=False)                   # a row without "u0"
        board.remove(["u0003"])
        assert board._grams is grams and grams.rows == 700
        assert grams.rows_with("zq") == 1 and grams.rows_with("u0") == 699
        check("changed")
        recount = board_view._GramCounts()
        recount.add(board._text.values())
        assert +grams.counts == +recount.counts      # kept by the changes == counted afresh
        board.set_records(users[:400])               # a bulk change: counted again, then used
        assert board._grams is None
        check("recounting")
        await wait_until(pilot, lambda: board._grams is not None, "the gram counts again", 10.0)
        assert board._grams.rows == 400
        check("recounted")


async def test_a_bulk_load_makes_search_texts_later_and_filters_the_same_meanwhile():
    """Pages of a listing skip the search texts (made a chunk per tick when idle, or at once
    when a filter needs them): filtering at any point must match a scan, also after a few rows
    changed while the texts were still being made."""
    rng = random.Random(21)
    async with hosted() as (pilot, board, clock):
        users = [make(f"u{i:05d}", rng) for i in range(12_500)]
        board.begin_stream()
        board.set_records(users[:1000], complete=False)
        board.set_records(users[1000:], complete=False)
        assert board._order_text is None and len(board._text) < len(users)
        assert board.view == expected_view(board, clock)          # no filter: no text needed
        board.set_records([users[5].evolve(account_email="new@corp.example", version=2)], complete=False)
        board.set_filter("new@corp")                                # a filter makes them all now
        assert board.view == expected_view(board, clock) == ["u00005"]
        board.set_filter("")
        board.set_records([make(f"u{i:05d}", rng, version=3) for i in range(20_000, 20_200)], complete=False)
        assert board._order_text is None
        board.end_stream()                                          # idle: made a chunk per tick
        await packed(pilot, board, timeout=10)
        assert board._order_text is not None
        status = {uid: board.status_of(uid) for uid in board._order}
        assert all(board._text[uid] == _search_text(board.record(uid), status[uid]) for uid in board._order)
        assert board._order_text == [board._text[uid] for uid in board._order]
        for query in ("u0001", "corp", "expiring u2"):
            board.set_filter(query)
            assert board.view == expected_view(board, clock), query


async def test_the_count_of_users_at_high_usage_follows_every_change():
    from console.usage import UsageCells

    async with hosted() as (pilot, board, clock):
        rng = random.Random(3)
        board.set_records([make(uid, rng) for uid in ("a", "b", "c")])
        board.set_usage({"a": UsageCells("Pro", 85.0, 10.0, 85.0), "b": UsageCells("Pro", 5.0, 79.0, 79.0),
                         "ghost": UsageCells("Pro", 99.0, 99.0, 99.0)})    # not on the board
        assert board.usage_high() == 1
        board.set_usage({"b": UsageCells("Pro", 5.0, 80.0, 80.0)})
        assert board.usage_high() == 2
        board.set_usage({"a": UsageCells("Pro", 10.0, 10.0, 10.0)})
        assert board.usage_high() == 1
        board.remove(["b"])
        assert board.usage_high() == 0
        assert board.usage_high(5.0) == 1          # another threshold: counted from the cells
        await pilot.pause()


async def test_lazy_filter_fills_the_screen_first_then_equals_a_scan(monkeypatch):
    """Over many rows a keystroke tests just enough rows for the screen; the rest are tested a
    chunk per tick. Partial, the view is always the start of the true answer; whole, it equals
    a row-by-row test, also when a narrower query or a changed row arrives before it is whole,
    and the count (ViewChanged) is posted only for the whole view."""
    import console.widgets.board_view as board_view

    monkeypatch.setattr(board_view, "_LAZY", 500)
    monkeypatch.setattr(board_view, "_SCAN_CHUNK", 150)
    rng = random.Random(23)
    counts: list[int] = []
    async with hosted(message_hook=lambda m: counts.append(m.shown)
                      if isinstance(m, BoardView.ViewChanged) else None) as (pilot, board, clock):
        users = {f"u{i:04d}": make(f"u{i:04d}", rng) for i in range(3000)}
        board.set_records(list(users.values()))
        board.sort_by("user")
        await pilot.pause()
        lazy = 0
        for query in ("corp", "corp u1", "corp u12", "postgres", "file ops", "corp", "zzz", "ops u2"):
            counts.clear()
            board.set_filter(query)
            expected = expected_view(board, clock)
            if board._pending is not None:
                lazy += 1
                assert board._view == expected[:len(board._view)], query
                assert len(board._view) >= min(len(expected), board._body_height), query
                assert counts == [], "no count before every row is tested"
                await wait_until(pilot, lambda: board._pending is None, f"the rest of {query!r}", 10.0)
                await pilot.pause()
                assert counts and counts[-1] == len(expected), query
            assert board._view == expected, query
        assert lazy >= 3, "the broad queries must have been answered lazily"

        # Narrowing before the view is whole: the rows tested and the rows left both narrow.
        board.set_filter("")
        board.set_filter("ops")
        assert board._pending is not None
        board.set_filter("ops u1")
        assert board.view == expected_view(board, clock)     # (reading the view finishes it)
        assert board._pending is None

        # A row changed while a filter is half done: shown or hidden by its new text.
        board.set_filter("")
        board.set_filter("corp example")
        assert board._pending is not None
        shown = board._view[0]
        hidden = next(u for u in sorted(users) if "corp" not in board._text[u])
        for uid, email in ((shown, None), (hidden, f"dev+{hidden}@corp.example")):
            users[uid] = users[uid].evolve(version=users[uid].version + 1, account_email=email)
        board.set_records([users[shown], users[hidden]], complete=False)
        await wait_until(pilot, lambda: board._pending is None, "the rest after a change", 10.0)
        assert hidden in board._view and shown not in board._view
        assert board._view == expected_view(board, clock)

        # The operator moves the cursor: the whole view first, then the move.
        board.set_filter("")
        board.set_filter("corp u")
        assert board._pending is not None
        board.action_edge(1)
        assert board._pending is None and board.selected_user_id == expected_view(board, clock)[-1]


async def test_a_term_inside_the_prefix_of_every_row_is_known_without_a_scan(monkeypatch):
    """Ids that share a prefix ("user-"): a term inside it is in every row, answered from the
    joined text's common prefix. A row added later without that prefix must not be shown for
    it: any change drops the joined text (and its prefix) until it is built again."""
    import console.widgets.board_view as board_view

    monkeypatch.setattr(board_view, "_PACK_CHUNK", 300)
    rng = random.Random(8)
    async with hosted() as (pilot, board, clock):
        users = [make(f"user-{i:04d}", rng) for i in range(900)]
        board.set_records(users)
        await wait_until(pilot, lambda: board._index is not None, "the joined text", 10.0)
        assert board._index.common.startswith("user-")
        for query in ("ser-", "user-", "user-0", "user-08"):
            board.set_filter(query)
            assert board.view == expected_view(board, clock), query
        board.set_filter("ser-")
        assert len(board.view) == 900
        board.set_records([make("admin-1", rng)], complete=False)
        assert "admin-1" not in board.view and board.view == expected_view(board, clock)
        await wait_until(pilot, lambda: board._index is not None, "the joined text again", 10.0)
        assert board._index.common == ""
        board.set_filter("user-0")
        board.set_filter("ser-")
        assert "admin-1" not in board.view and board.view == expected_view(board, clock)
