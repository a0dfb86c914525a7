"""The board's table, drawn with the Line API: only the rows on screen are ever rendered.

Records live in a dict keyed by user id. Sorting and filtering rebuild one list of ids (the
view) in a single pass, so 100 000 users cost one sort, never 100 000 widget updates. The
cursor is anchored to a user id, so it survives polls, sorts and filters.
"""

from __future__ import annotations

import gc
import itertools
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from collections import Counter
from itertools import accumulate, chain, compress, repeat
from operator import attrgetter
from os.path import commonprefix
from typing import Callable, Iterable

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..tokens import DEFAULT_REFRESH_BUFFER, Status, TokenRecord, format_duration, token_status, token_statuses
from ..users import shown
from ..usage import WARN, UsageCells, bar, level, usage_term
from .status_badge import HELD_LABEL, LABEL_WIDTH, LONG_LIVED_LABEL, status_label


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    short: str
    minimum: int
    ideal: int          # 0: takes whatever width is left
    right: bool = False
    comfortable: int = 0   # below this the column is hard to read: drop a less useful one first


COLUMNS: tuple[Column, ...] = (
    Column("user", "USER", "USER", 8, 18, comfortable=14),
    Column("email", "ACCOUNT", "ACCOUNT", 10, 28, comfortable=22),
    Column("status", "STATUS", "STATUS", LABEL_WIDTH, LABEL_WIDTH),
    Column("expires", "EXPIRES IN", "EXPIRES", 8, 11, right=True),
    Column("last_used", "LAST USED", "USED", 8, 10, right=True, comfortable=9),
    Column("refreshes", "REFRESHES", "REFR", 4, 10, right=True),
    Column("source", "SOURCE", "SRC", 6, 8),
    Column("scopes", "SCOPES", "SCOPES", 6, 0, comfortable=24),
    Column("plan", "PLAN", "PLAN", 4, 8, comfortable=7),
    Column("5h", "5H", "5H", 4, 10, right=True, comfortable=8),
    Column("7d", "7D", "7D", 4, 10, right=True, comfortable=8),
)
SORT_KEYS: tuple[str, ...] = tuple(c.key for c in COLUMNS)
ALWAYS_SHOWN = frozenset({"user", "status"})   # the operator's reason to look at the board
# Least useful first: the columns that go when the board is too narrow for them all.
# The usage columns (5h, 7d) win over the lower-priority ones at 80 columns; PLAN goes first of them.
_DROP_ORDER = ("scopes", "source", "refreshes", "last_used", "plan", "email", "expires")
_GROW_ORDER = ("email", "user", "5h", "7d", "plan", "expires", "last_used", "refreshes", "source")


def layout_columns(width: int, hidden: Iterable[str] = ()) -> list[tuple[Column, int]]:
    """Column widths for a board ``width`` cells wide (one gap cell before each column).

    Columns the operator hid are left out; then, while the rest would be cramped, the least
    useful go (``_DROP_ORDER``); the user and status columns always stay.
    """
    hidden = set(hidden) - ALWAYS_SHOWN
    cols = [c for c in COLUMNS if c.key not in hidden]

    def need(chosen: list[Column]) -> int:
        return sum(max(c.minimum, c.comfortable or c.minimum) for c in chosen) + len(chosen)

    for key in _DROP_ORDER:
        if need(cols) <= width:
            break
        cols = [c for c in cols if c.key != key]
    roomy = need(cols) <= width
    widths = {c.key: max(c.minimum, c.comfortable) if roomy else c.minimum for c in cols}
    spare = width - sum(widths.values()) - len(cols)
    growable = [c for key in _GROW_ORDER for c in cols if c.key == key]
    while spare > 0 and growable:
        for col in list(growable):
            if spare <= 0:
                break
            if widths[col.key] >= col.ideal:
                growable.remove(col)
                continue
            widths[col.key] += 1
            spare -= 1
    flex = next((c for c in cols if c.ideal == 0), None) \
        or next((c for key in ("email", "user") for c in cols if c.key == key))
    widths[flex.key] += max(0, spare)
    return [(c, widths[c.key]) for c in cols]


_SHORT_SCOPES: dict[tuple[str, ...], str] = {}


def short_scopes(scopes: Iterable[str]) -> str:
    """``user:inference org:create_api_key`` -> ``inference org:create_api_key``."""
    key = tuple(scopes)
    short = _SHORT_SCOPES.get(key)
    if short is None:
        short = " ".join(s[5:] if s.startswith("user:") else s for s in key)
        if len(_SHORT_SCOPES) < 4096:   # a handful of scope sets in practice
            _SHORT_SCOPES[key] = short
    return short


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _fit(text: str, width: int, right: bool = False) -> str:
    if width <= 0:
        return ""
    if not text.isprintable():  # a stored id with control characters: escaped, never drawn raw
        text = shown(text, len(text) * 4)
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


_NO_USAGE = UsageCells()


def _sort_key(key: str, records: dict[str, TokenRecord], status: dict[str, Status],
              usage: dict[str, UsageCells] | None = None) -> Callable:
    """Ascending key for a column; every key ends with the user id, so keys are unique."""
    usage = usage if usage is not None else {}
    if key in ("5h", "7d"):   # users without the window sort after every percentage
        def by_window(u, window=key):
            pct = getattr(usage.get(u, _NO_USAGE), "p" + window)
            return (pct is None, pct or 0.0, u)
        return by_window
    if key == "plan":
        return lambda u: (usage.get(u, _NO_USAGE).plan is None, (usage.get(u, _NO_USAGE).plan or "").lower(), u)
    if key == "status":
        return lambda u: (_status_rank(status[u], records[u].expires_at), u)
    if key == "user":
        return lambda u: u
    if key == "email":
        return lambda u: ((records[u].account_email or "").lower(), u)
    if key == "expires":
        return lambda u: (records[u].expires_at, u)
    if key == "last_used":
        return lambda u: (records[u].last_used or 0.0, u)
    if key == "refreshes":
        return lambda u: (records[u].refresh_count, u)
    if key == "source":
        return lambda u: (records[u].source, u)
    if key == "scopes":
        return lambda u: (" ".join(records[u].scopes), u)
    raise ValueError(f"unknown sort column {key!r}; one of {', '.join(SORT_KEYS)}")


def _same(a: TokenRecord, b: TokenRecord) -> bool:
    """Nothing the board shows differs (a token change always bumps the version)."""
    return (a.version == b.version and a.expires_at == b.expires_at and a.last_used == b.last_used
            and a.needs_login == b.needs_login and a.locked == b.locked and a.refresh_count == b.refresh_count
            and a.account_email == b.account_email and a.source == b.source)


# The words a status is found by: its value and its label ("needs_login", "needs login").
_STATUS_WORDS = {status: f"{status.value}\t{status_label(status)[2:]}" for status in Status}


_USER_ID = attrgetter("user_id")
_EXPIRES = attrgetter("expires_at")
_URGENCY_OF = {status: status.urgency for status in Status}


def _status_rank(status: Status, expires_at: float) -> float:
    """Urgency, then expiry, as one float: a sort whose keys start with a float compares them
    in C, several times faster than comparing (urgency, expiry) pairs. Expiry times lie far
    below the 1e13 between two urgencies (year 318 857), and equal ranks fall back to the id."""
    return _URGENCY_OF[status] * 1e13 + expires_at


def _search_text(record: TokenRecord, status: Status) -> str:
    return "\t".join((record.user_id, record.account_email or "", _STATUS_WORDS[status],
                      record.source, short_scopes(record.scopes))).lower()


# Up to this many changed rows are moved one by one (bisect); more, and the order is re-sorted.
_FEW = 64
# Search texts are re-packed in chunks of this many rows, one chunk per tick of this many seconds.
_PACK_CHUNK = 10_000
_PACK_EVERY = 0.01
_TEXT_CHUNK = 4000   # search texts made per tick while idle (~5 ms)
_PACK_SETTLE = 0.3   # after a bulk change: wait for the next page of a load, if one is coming
# A change this large is a (re)load: afterwards the rows are frozen out of the cyclic collector.
_BULK = 5000
# Queries recently filtered for, with their rows, while the data and order stay the same:
# erasing a character back to an earlier query costs a lookup.
_RECENT = 64
# A filter over at least this many rows tests just enough of them to fill the screen, and the
# rest in chunks of _SCAN_CHUNK per timer tick: a keystroke waits for one screen, not 100 000 rows.
_LAZY = 20_000
_SCAN_CHUNK = 4096
# A term in more than this share of the rows is tested row by row (one C-level map) instead:
# mapping thousands of hits back one by one costs more than testing every row.
_COMMON = 0.05


class _TextIndex:
    """Every row's search text joined by newlines, and where each row starts.

    A term never holds whitespace (the query is split on it), so it can never match across
    the newline between two rows. ``rows(term)`` is the ascending rows that hold ``term``,
    or ``None`` when the term is too common for this index to be the faster way.
    """

    __slots__ = ("blob", "starts", "limit", "common")

    def __init__(self, texts: list[str]) -> None:
        self.blob = "\n".join(texts) + "\n"
        self.starts = list(accumulate(map((1).__add__, map(len, texts)), initial=0))
        self.limit = max(64, int(len(texts) * _COMMON))
        # What every row starts with (ids that share a prefix: "user-00"): a term inside it is
        # in every row, known without testing one.
        self.common = commonprefix((min(texts), max(texts))) if texts else ""

    def rows(self, term: str) -> list[int] | None:
        find, starts, limit = self.blob.find, self.starts, self.limit
        sample = len(starts) // 16
        if sample * 16 > limit and self.blob.count(term, 0, starts[sample]) * 16 > limit * 2:
            return None   # a sixteenth of the rows already says the term is common
        hits: list[int] = []
        at = find(term)
        while at >= 0:
            row = bisect_right(starts, at) - 1
            hits.append(row)
            if len(hits) > limit:
                return None
            at = find(term, starts[row + 1])
        return hits


def _grams(text: str) -> set[str]:
    """The one- and two-character strings in ``text``."""
    return {*text, *map(str.__add__, text, text[1:])}


# Rows whose grams are counted per timer tick while the board is idle.
_GRAM_CHUNK = 500


class _GramCounts:
    """How many rows hold each one- and two-character string.

    A one- or two-character term is in most rows, so neither the joined text (too many hits)
    nor the recent results help with it, and testing every row costs a full scan per
    keystroke. Its count answers the common cases at once: in every row (the term changes
    nothing), in none (nothing matches); a longer term with a two-character piece no row
    holds matches nothing. Counted in chunks while idle, then kept by each change.
    """

    __slots__ = ("counts", "rows")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rows = 0

    def add(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        self.counts.update(chain.from_iterable(map(_grams, texts)))
        self.rows += len(texts)

    def remove(self, text: str) -> None:
        self.counts.subtract(_grams(text))
        self.rows -= 1

    def rows_with(self, term: str) -> int | None:
        """Exactly how many rows hold a term of one or two characters; for a longer one, 0 when
        no row can hold it, else ``None`` (unknown)."""
        if len(term) <= 2:
            return self.counts.get(term, 0)
        counts = self.counts
        if any(counts.get(term[i:i + 2], 0) == 0 for i in range(len(term) - 1)):
            return 0
        return None


def _scan(ids: list[str], texts: list[str], at: int, end: int, terms: list[str],
          need: int) -> tuple[list[str], list[str], int]:
    """The rows of ``ids[at:end]`` whose text holds every term, tested in growing slices until
    ``need`` are found; returns them and where the test stopped."""
    found_ids: list[str] = []
    found_texts: list[str] = []
    step = 256
    while at < end and len(found_ids) < need:
        stop = min(at + step, end)
        chunk_ids, chunk_texts = ids[at:stop], texts[at:stop]
        for term in terms:
            keep = list(map(str.__contains__, chunk_texts, repeat(term)))
            chunk_ids, chunk_texts = list(compress(chunk_ids, keep)), list(compress(chunk_texts, keep))
        found_ids += chunk_ids
        found_texts += chunk_texts
        at, step = stop, step * 2
    return found_ids, found_texts, at


class BoardView(ScrollView, can_focus=True, inherit_bindings=False):
    """Every user, one line each; a fixed header line shows the columns and the sort.

    ``_order`` holds every user ascending by the sort key, with ``_order_text`` (the search
    text of each row) aligned to it; the view is the filtered (and, for a reversed sort,
    reversed) copy. A few changed rows are moved with bisect; many are merged with one sort of
    two sorted runs. Rows change status with time alone: a heap of those moments moves them.
    """

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "edge(0)", "First", show=False),
        Binding("end,G", "edge(1)", "Last", show=False),
    ]

    COMPONENT_CLASSES = {
        "board--header", "board--header-sorted", "board--cursor", "board--dim", "board--marked",
        "board--status-active", "board--status-expiring", "board--status-expired_refreshable",
        "board--status-expired", "board--status-needs_login", "board--status-locked",
        "board--status-expired", "board--status-needs_login", "board--status-account_disabled",
        "board--status-oauth_not_allowed", "board--usage-high", "board--usage-full",
    }

    class ViewChanged(Message):
        """The rows on offer changed (data, filter or sort): ``shown`` of ``total``."""

        def __init__(self, board: "BoardView", shown: int, total: int) -> None:
            super().__init__()
            self.board = board
            self.shown = shown
            self.total = total

    class Selected(Message):
        """A row was double-clicked."""

        def __init__(self, user_id: str) -> None:
            super().__init__()
            self.user_id = user_id

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 refresh_buffer: float = DEFAULT_REFRESH_BUFFER, **kwargs) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self._buffer = refresh_buffer
        # These dicts are mutated in place, never replaced: the sort key closes over them.
        self._records: dict[str, TokenRecord] = {}
        self._status: dict[str, Status] = {}
        self._usage: dict[str, UsageCells] = {}   # plan and window percentages (set_usage)
        self._high: set[str] = set()              # users at or above WARN in any window
        self._high_count: int | None = None       # of them on the board (None: count again)
        self._text: dict[str, str] = {}
        self._counts: dict[Status, int] = {s: 0 for s in Status}
        self._order: list[str] = []
        self._order_text: list[str] | None = []   # None: some rows have no search text yet
        self._index: _TextIndex | None = None     # the order's texts joined (built when filtering)
        self._recent: dict = {}                   # (query, reversed) -> (ids, texts), see _RECENT
        self._grams: _GramCounts | None = None    # ready when counted over every row
        self._gram_work: tuple[_GramCounts, list[str], int] | None = None   # (counts, texts, next)
        self._gram_timer = None
        self._view: list[str] = []
        self._view_text: list[str] | None = []
        self._filter = ""
        self._filtered_from: str | None = None   # the query the view was built for
        # A lazy filter's rows not yet tested: (ids, texts, next row, terms); the view holds the
        # matches of the rows before. None: the view is whole.
        self._pending: tuple[list[str], list[str], int, list[str]] | None = None
        self._scan_timer = None
        self._sort_key = "status"
        self._sort_reverse = False
        self._key_of = _sort_key("status", self._records, self._status, self._usage)
        self._keys: dict[str, tuple] = {}         # each user's current sort key
        self._key = self._keys.__getitem__        # C-level lookups for sort and bisect
        self._edges: list[tuple[float, int, str, TokenRecord]] = []   # (when, seq, user, record)
        self._seq = itertools.count()
        self._pack_timer = self._pack_start = None
        self._pack_at = 0
        self._streaming = False   # see begin_stream
        self._edges_due: list[tuple] = []   # a streamed listing's pages, whose edges are not made yet
        self._idle_due = False
        self._cursor = 0
        self._anchor: str | None = None          # the user the operator put the cursor on
        self._layout: tuple[int, list[tuple[Column, int]]] | None = None
        self._lines: LRUCache[tuple, Strip] = LRUCache(1024)
        self._frame: tuple | None = None          # (width, base style, top, now) while a frame is drawn
        self._hidden: frozenset[str] = frozenset()   # columns the operator chose not to see
        self._marked: dict[str, None] = {}           # marked user ids, in marking order
        self._held: frozenset[str] = frozenset()  # users whose new token is held locally, not stored
        self.loaded = False

    # -- reading -----------------------------------------------------------------------

    @property
    def view(self) -> list[str]:
        """User ids in display order (do not mutate)."""
        self._whole()
        return self._view

    def _whole(self) -> None:
        """Finish a lazy filter now: its caller needs every row of the view."""
        if self._pending is not None:
            self._scan_more(None)
            self._after_view_change()

    def _scan_more(self, rows: int | None) -> bool:
        """Test up to ``rows`` more rows of a lazy filter (None: all); returns whether it is done."""
        ids, texts, at, terms = self._pending
        end = len(ids) if rows is None else min(len(ids), at + rows)
        found_ids, found_texts, at = _scan(ids, texts, at, end, terms, len(ids))
        self._view += found_ids
        self._view_text += found_texts
        if at < len(ids):
            self._pending = (ids, texts, at, terms)
            return False
        self._pending = None
        if self._scan_timer is not None:
            self._scan_timer.stop()
            self._scan_timer = None
        self._remember(self._filtered_from or "", self._view, self._view_text)
        return True

    def _start_scanning(self) -> None:
        if self._pending is not None and self._scan_timer is None:
            self._scan_timer = self.set_interval(_PACK_EVERY / 2, self._scan_step)

    def _scan_step(self) -> None:
        if self._pending is None:   # a tick queued before the timer stopped, or finished meanwhile
            if self._scan_timer is not None:
                self._scan_timer.stop()
                self._scan_timer = None
            return
        if self._scan_more(_SCAN_CHUNK):
            self._after_view_change()

    @property
    def total(self) -> int:
        return len(self._records)

    @property
    def filter_text(self) -> str:
        return self._filter

    @property
    def sort_key(self) -> str:
        return self._sort_key

    @property
    def sort_reverse(self) -> bool:
        return self._sort_reverse

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected_user_id(self) -> str | None:
        return self._view[self._cursor] if self._view else None

    def on_screen(self) -> list[str]:
        """User ids of the rows drawn now (the board asks Claude about these, and no others)."""
        top = int(self.scroll_offset.y)
        return self._view[top:top + self._body_height]

    def record(self, user_id: str) -> TokenRecord | None:
        return self._records.get(user_id)

    def set_held(self, user_ids: Iterable[str]) -> None:
        """Mark the users whose new token is held locally, not yet stored (a word on the row)."""
        held = frozenset(user_ids)
        if held != self._held:
            self._held = held
            self._lines.clear()
            self.refresh()

    def status_of(self, user_id: str) -> Status | None:
        return self._status.get(user_id)

    def counts(self) -> dict[Status, int]:
        return dict(self._counts)

    def usage_of(self, user_id: str) -> UsageCells | None:
        return self._usage.get(user_id)

    def usage_high(self, threshold: float = WARN) -> int:
        """Users (on the board) at or above ``threshold`` percent of any window."""
        if threshold == WARN:   # the header asks on every keystroke: counted once per change
            if self._high_count is None:
                self._high_count = len(self._high.intersection(self._records)) if self._high else 0
            return self._high_count
        return sum(1 for uid, cells in self._usage.items()
                   if uid in self._records and cells.peak is not None and cells.peak >= threshold)

    def set_usage(self, cells: dict[str, UsageCells]) -> bool:
        """Plan and usage per user (``{user: UsageCells}``, as ``service.usage_cells`` reads
        them); returns whether the board changed. A usage sort is re-sorted; the filter is
        applied again."""
        usage = self._usage
        if usage:
            get = usage.get
            cells = {uid: one for uid, one in cells.items() if get(uid) != one}
        if not cells:
            return False
        usage.update(cells)
        self._high_count = None
        high = self._high
        for uid, one in cells.items():
            if one.peak is not None and one.peak >= WARN:
                high.add(uid)
            else:
                high.discard(uid)
        if self._sort_key in ("plan", "5h", "7d"):
            keys, key_of = self._keys, self._key_of
            for uid in self._records:
                keys[uid] = key_of(uid)
            self._order = sorted(self._records, key=self._key)
            self._order_text = self._texts_in_order()
        self._order_changed()   # filter results cached for a query may hold other usage now
        self._lines.clear()
        self._filtered_from = None
        self._refilter()
        self._after_view_change()
        return True

    # -- columns and marks -------------------------------------------------------------

    @property
    def hidden_columns(self) -> frozenset[str]:
        return self._hidden

    def set_hidden_columns(self, keys: Iterable[str]) -> None:
        """Hide these columns (the user and status columns cannot be hidden)."""
        hidden = frozenset(keys) - ALWAYS_SHOWN
        unknown = hidden - set(SORT_KEYS)
        if unknown:
            raise ValueError(f"unknown column {sorted(unknown)[0]!r}; one of {', '.join(SORT_KEYS)}")
        if hidden != self._hidden:
            self._hidden = hidden
            self._layout = None
            self._lines.clear()
            self.refresh()

    def shown_columns(self) -> list[str]:
        return [column.key for column, _ in self._columns()]

    @property
    def marked(self) -> list[str]:
        """The marked users still on the board, in the order they were marked."""
        return list(self._marked)

    def toggle_mark(self) -> None:
        """Mark or unmark the cursor's row, then move down (space, space, space marks a run)."""
        uid = self.selected_user_id
        if uid is None:
            return
        if uid in self._marked:
            del self._marked[uid]
        else:
            self._marked[uid] = None
        self._lines.clear()
        self._move_cursor(self._cursor + 1)
        self.refresh()
        self.post_message(self.ViewChanged(self, len(self._view), len(self._records)))

    def clear_marks(self) -> bool:
        if not self._marked:
            return False
        self._whole()
        self._marked.clear()
        self._lines.clear()
        self.refresh()
        self.post_message(self.ViewChanged(self, len(self._view), len(self._records)))
        return True

    # -- changing the data -------------------------------------------------------------

    def set_records(self, records: Iterable[TokenRecord], *, complete: bool = True) -> bool:
        """Upsert records, diffed by user id. ``complete``: users not given are removed.

        Returns whether anything the board shows changed.
        """
        old = self._records
        records = records if isinstance(records, list) else list(records)
        if not complete and (not old or not any(map(old.__contains__, map(_USER_ID, records)))):
            # New users only (a page of the first listing): nothing to diff.
            changed = dict(zip(map(_USER_ID, records), records))
            first = not self.loaded
            self.loaded = True
            if changed:
                self._apply(list(changed.values()), [])
            elif first:
                self._after_view_change()
            return bool(changed)
        changed: dict[str, TokenRecord] = {}
        given: set[str] = set()
        for record in records:
            given.add(record.user_id)
            prev = old.get(record.user_id)
            if prev is None or not _same(prev, record):
                changed[record.user_id] = record     # (a user listed twice counts once)
        removed = [uid for uid in old if uid not in given] if complete else []
        first = not self.loaded
        self.loaded = True
        if not changed and not removed:
            if first:
                self._after_view_change()
            return False
        self._apply(list(changed.values()), removed)
        return True

    def retain(self, user_ids: set[str]) -> bool:
        """Drop every user not in ``user_ids`` (the end of a paged listing)."""
        removed = [uid for uid in self._records if uid not in user_ids]
        if removed:
            self._apply([], removed)
        return bool(removed)

    def remove(self, user_ids: Iterable[str]) -> bool:
        """Drop these users (deleted elsewhere); returns whether any was shown."""
        removed = [uid for uid in dict.fromkeys(user_ids) if uid in self._records]
        if removed:
            self._apply([], removed)
        return bool(removed)

    def set_filter(self, text: str) -> None:
        text = text.strip()
        if text == self._filter:
            return
        self._filter = text
        self._refilter()
        self._after_view_change()

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        """Sort by a column; choosing the current column again flips the direction."""
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort column {key!r}; one of {', '.join(SORT_KEYS)}")
        if reverse is None:
            reverse = (not self._sort_reverse) if key == self._sort_key else False
        if key != self._sort_key:
            self._sort_key = key
            self._key_of = key_of = _sort_key(key, self._records, self._status, self._usage)
            keys = self._keys
            for uid in self._records:
                keys[uid] = key_of(uid)
            self._order = sorted(self._records, key=self._key)
            self._order_text = self._texts_in_order()
            self._order_changed()
            self._pack_soon()
        self._sort_reverse = reverse
        self._filtered_from = None
        self._refilter()
        self._after_view_change()

    def cycle_sort(self) -> None:
        index = SORT_KEYS.index(self._sort_key)
        self.sort_by(SORT_KEYS[(index + 1) % len(SORT_KEYS)], reverse=False)

    def select_user(self, user_id: str) -> None:
        """Put the cursor on a user (now, or as soon as the user is in the view)."""
        self._anchor = user_id
        self._whole()
        self._place_cursor()
        self._scroll_to_cursor()
        self.refresh()

    # -- keeping the order -------------------------------------------------------------

    def _apply(self, changed: list[TokenRecord], removed: list[str]) -> None:
        self._high_count = None   # rows come and go: count the users at high usage again
        if len(changed) + len(removed) > _FEW:
            self._apply_many(changed, removed)
            return
        now = self._clock()
        records, status, text, counts = self._records, self._status, self._text, self._counts
        # Take the rows out while their old keys still find them.
        for uid in removed:
            self._unplace(uid)
        for record in changed:
            if record.user_id in records:
                self._unplace(record.user_id)
        keys, key_of, buffer = self._keys, self._key_of, self._buffer
        grams = self._grams
        if grams is not None:   # keep the counts by taking the rows' old texts out
            for uid in removed:
                grams.remove(text[uid])
            for record in changed:
                if record.user_id in text:
                    grams.remove(text[record.user_id])
        for uid in removed:
            counts[status.pop(uid)] -= 1
            del records[uid], keys[uid]
            text.pop(uid, None)
            self._marked.pop(uid, None)
        for record in changed:
            uid = record.user_id
            if uid in status:
                counts[status[uid]] -= 1
            current = token_status(record, now, buffer)
            records[uid], status[uid], text[uid] = record, current, _search_text(record, current)
            keys[uid] = key_of(uid)
            counts[current] += 1
            if not record.needs_login and record.expires_at > now:   # when it next changes status by time alone
                edge = record.expires_at - buffer
                heappush(self._edges, (edge if edge > now else record.expires_at, next(self._seq), uid, record))
        if grams is not None:
            grams.add(text[record.user_id] for record in changed)
        if len(self._edges) > 4 * len(records) + 1024:   # entries of rows that changed since pile up
            self._edges = [e for e in self._edges if records.get(e[2]) is e[3]]
            heapify(self._edges)
        for record in changed:
            self._place(record.user_id)
        self._filtered_from = None
        self._refilter()
        self._after_view_change()

    def _apply_many(self, changed: list[TokenRecord], removed: list[str]) -> None:
        """A page of a listing (or a reload): every step is one pass over the rows, written as
        comprehensions over parallel lists, and the new rows are merged into the order with one
        sort of two sorted runs. At 100 000 users this is what "all rows loaded" waits for."""
        now, buffer = self._clock(), self._buffer
        records, status, text, keys, counts = self._records, self._status, self._text, self._keys, self._counts
        uids = list(map(_USER_ID, changed))
        gone = [status.pop(uid) for uid in removed]
        for uid in removed:
            del records[uid], keys[uid]
            self._marked.pop(uid, None)
        present = records.keys() & uids   # rows already shown (a set operation: no loop here)
        moved = present.union(removed)
        gone += map(status.__getitem__, present)
        current = token_statuses(changed, now, buffer)
        for each in Status:   # list.count: a C loop per status, not a dict update per row
            counts[each] += current.count(each) - gone.count(each)
        records.update(zip(uids, changed))
        status.update(zip(uids, current))
        for uid in moved:   # texts are made when first needed, or a chunk per tick when idle
            text.pop(uid, None)
        expires = list(map(_EXPIRES, changed))
        if self._sort_key == "status":   # the default order, built without a call per row
            new_keys = list(zip(map(_status_rank, current, expires), uids))
        else:
            new_keys = list(map(self._key_of, uids))
        keys.update(zip(uids, new_keys))
        if self._streaming:   # the heap is made once, at the first tick after the listing
            self._edges_due.append((uids, changed, expires, now))
        else:
            edges = self._edges_of(zip(uids, changed, expires), now)
            if moved:   # the entries of rows that changed would pile up
                self._edges = [e for e in self._edges if records.get(e[2]) is e[3]]
            if len(edges) > len(self._edges):
                self._edges += edges
                heapify(self._edges)
            else:   # a few rows against a large heap: pushing them is cheaper than a heapify
                for edge in edges:
                    heappush(self._edges, edge)
        # Sort the new rows by the first part of their keys alone (floats, ints or strings all
        # of one type compare in C), then once more by the whole keys: that pass only puts
        # ties in place and merges the new run into the rows already sorted, in linear time.
        firsts = [k[0] for k in new_keys] if new_keys and type(new_keys[0]) is tuple else new_keys
        fresh = list(map(uids.__getitem__, sorted(range(len(uids)), key=firsts.__getitem__)))
        if self._order:
            rest = [uid for uid in self._order if uid not in moved] if moved else self._order
            fresh = rest + fresh
        fresh.sort(key=self._key)
        self._order = fresh
        self._order_text = None
        self._order_changed()
        self._pack_soon(settle=_PACK_SETTLE)
        self._count_grams_soon()
        self._filtered_from = None
        self._refilter()
        self._after_view_change()
        if len(changed) >= _BULK:
            # Thousands of long-lived rows: keep them out of the collector's full passes, which
            # would otherwise stall a keystroke for a quarter second at 100 000 users. Rows hold
            # no reference cycles, so reference counting still frees the ones replaced later.
            gc.freeze()

    def begin_stream(self) -> None:
        """Pages of a listing are arriving: the idle work (packing the search texts, counting
        their grams) waits for ``end_stream``, so no tick of it slows the load."""
        self._streaming = True

    def end_stream(self) -> None:
        self._streaming = False
        if self._idle_due:
            self._idle_due = False
            self._pack_soon(settle=_PACK_SETTLE)
            self._count_grams_soon()

    def _edges_of(self, rows: Iterable[tuple[str, TokenRecord, float]], now: float) -> list[tuple]:
        """Heap entries for when each row next changes status by time alone: at the refresh
        buffer, then at expiry (rows needing a login never do)."""
        seq, buffer = self._seq, self._buffer
        return [(when - buffer if when - buffer > now else when, next(seq), uid, record)
                for uid, record, when in rows if when > now and not record.needs_login]

    def _make_edges(self) -> None:
        """The edges of a streamed listing's pages, each as of the time it was applied, in one
        heap with the ones before (entries of rows changed since are dropped)."""
        records, pages, self._edges_due = self._records, self._edges_due, []
        edges = self._edges
        for uids, changed, expires, then in pages:
            edges += self._edges_of(zip(uids, changed, expires), then)
        self._edges = [e for e in edges if records.get(e[2]) is e[3]]
        heapify(self._edges)

    def _pack_soon(self, settle: float = 0.0) -> None:
        """(Re)start packing the search texts, a chunk per timer tick, once changes have
        paused for ``settle`` seconds (a paged load packs once, at its end).

        A filter reads the texts in order; after a sort or a bulk load, 100 000 strings
        scattered in memory are scanned about twice as slowly as strings that lie next to each
        other. Copying them into place costs ~30 ms at 100 000 rows, so it runs in ~3 ms steps
        between events: no keystroke waits for it.
        """
        for timer in (self._pack_timer, self._pack_start):
            if timer is not None:
                timer.stop()
        self._pack_timer = self._pack_start = None
        if len(self._order) < _PACK_CHUNK or not self.is_attached:
            return
        if self._streaming:   # a listing is still arriving: its end starts the idle work
            self._idle_due = True
            return
        self._pack_at = 0
        if settle:
            self._pack_start = self.set_timer(settle, self._start_packing)
        else:
            self._start_packing()

    def _start_packing(self) -> None:
        self._pack_start = None
        self._pack_timer = self.set_interval(_PACK_EVERY, self._pack_step)

    def _texts_in_order(self) -> list[str] | None:
        """The order's search texts, or None while some rows have none yet."""
        text = self._text
        return list(map(text.__getitem__, self._order)) if len(text) == len(self._records) else None

    def _finish_texts(self) -> None:
        """Make every search text still missing now (a filter is being typed)."""
        records, status, text = self._records, self._status, self._text
        missing = [uid for uid in self._order if uid not in text]
        text.update(zip(missing, map(_search_text, map(records.__getitem__, missing),
                                     map(status.__getitem__, missing))))
        self._order_text = list(map(text.__getitem__, self._order))

    def _text_step(self) -> None:
        """Idle: make the search texts of the next chunk of the order. Made in order, they lie
        next to each other in memory, so there is nothing left to pack afterwards."""
        records, status, text, start = self._records, self._status, self._text, self._pack_at
        part = [uid for uid in self._order[start:start + _TEXT_CHUNK] if uid not in text]
        text.update(zip(part, map(_search_text, map(records.__getitem__, part), map(status.__getitem__, part))))
        self._pack_at = start + _TEXT_CHUNK
        if self._pack_at >= len(self._order):
            self._finish_texts()   # (rows that moved meanwhile, if any)
            self._pack_at = len(self._order)

    def _pack_step(self) -> None:
        if self._order_text is None:
            self._text_step()
            return
        texts, start = self._order_text, self._pack_at
        if start >= len(texts):
            timer, self._pack_timer = self._pack_timer, None
            if timer is None:  # a tick queued before the timer stopped: nothing left to do
                return
            timer.stop()
            if self._view_text is not texts:  # a filtered view still holds the old copies
                self._view_text = [self._text[uid] for uid in self._view]
            if self._index is None and len(texts) > _PACK_CHUNK:   # ready before the first keystroke
                self._index = _TextIndex(texts)
            # The order, its texts and the index are new and long-lived: keep them out of the
            # collector's full passes, which otherwise walk every row and stall a keystroke for
            # 0.1-0.4 s at 100 000 users (as after a load, in _apply).
            gc.freeze()
            return
        # The order and its texts always move together, so the two slices correspond; a row
        # moved meanwhile is at worst left unpacked.
        end = start + _PACK_CHUNK
        chunk = texts[start:end]
        packed = "\0".join(chunk).split("\0")
        if len(packed) == len(chunk):  # (a NUL inside a text: leave this chunk as it is)
            texts[start:end] = packed  # in place: the old copies are freed as it goes
            self._text.update(zip(self._order[start:end], packed))
        self._pack_at = end

    def _count_grams_soon(self) -> None:
        """The gram counts are stale: count every row again, in steps, once changes pause."""
        self._grams = self._gram_work = None
        if self._gram_timer is not None:
            self._gram_timer.stop()
            self._gram_timer = None
        if len(self._records) < _PACK_CHUNK or not self.is_attached:
            return   # (few rows: testing each one is quick enough)
        if self._streaming:
            self._idle_due = True
            return
        self._gram_timer = self.set_timer(_PACK_SETTLE, self._start_counting)

    def _start_counting(self) -> None:
        if self._order_text is None:   # the texts are still being made: count them after
            self._gram_timer = self.set_timer(_PACK_SETTLE, self._start_counting)
            return
        self._gram_work = (_GramCounts(), list(self._text.values()), 0)
        self._gram_timer = self.set_interval(_PACK_EVERY, self._count_step)

    def _count_step(self) -> None:
        work = self._gram_work
        if work is None:   # a tick queued before the timer stopped
            return
        grams, texts, start = work
        grams.add(texts[start:start + _GRAM_CHUNK])
        if start + _GRAM_CHUNK < len(texts):
            self._gram_work = (grams, texts, start + _GRAM_CHUNK)
            return
        self._gram_timer.stop()
        self._gram_timer = self._gram_work = None
        self._grams = grams

    def _unplace(self, uid: str) -> None:
        order = self._order
        i = bisect_left(order, self._keys[uid], key=self._key)
        if i >= len(order) or order[i] != uid:
            i = order.index(uid)
        del order[i]
        if self._order_text is not None:
            del self._order_text[i]
        self._order_changed()

    def _place(self, uid: str) -> None:
        i = bisect_left(self._order, self._keys[uid], key=self._key)
        self._order.insert(i, uid)
        self._order_changed()
        if self._order_text is not None:
            self._order_text.insert(i, self._text[uid])

    def _refilter(self) -> None:
        pending, self._pending = self._pending, None
        query = self._filter.lower()
        terms = query.split()
        if terms and self._order_text is None:
            self._finish_texts()
        usage_terms = [t for t in terms if usage_term(t) is not None]
        terms = [t for t in terms if t not in usage_terms]
        grams = self._grams
        if grams is not None and terms:   # terms every row holds change nothing; one no row holds empties the view
            found = [(term, grams.rows_with(term)) for term in terms]
            if any(count == 0 for _, count in found):
                self._view, self._view_text = [], []
                self._filtered_from = query
                return
            terms = [term for term, count in found if count != grams.rows]
        if self._index is not None and terms:
            terms = [term for term in terms if term not in self._index.common]
        narrowing = bool(terms) and not usage_terms and self._filtered_from is not None \
            and self._filtered_from != "" and query.startswith(self._filtered_from)
        recent = self._recent
        hit = recent.get((query, self._sort_reverse)) if query.split() else None
        if hit is not None:
            self._view, self._view_text = hit
            self._filtered_from = query
            return
        rest = None   # rows a lazy filter has yet to test: (ids, texts, from)
        if narrowing:  # a longer query only narrows: start from the current view
            ids, texts = self._view, self._view_text
            if pending is not None:   # (and from the rows the last query had yet to test)
                rest = pending[:3]
        else:
            ids, texts, terms = self._indexed(terms) if terms else (self._order, self._order_text, terms)
        if (rest is None and terms and not usage_terms and len(ids) >= _LAZY and self._anchor is None
                and (narrowing or not self._sort_reverse) and self.is_attached):
            rest, ids, texts = (ids, texts, 0), [], []   # (rows in display order: a view, or the order unreversed)
        for term in terms:
            keep = list(map(str.__contains__, texts, repeat(term)))
            if keep.count(False):   # (a term every row has, like "@", changes nothing)
                ids, texts = list(compress(ids, keep)), list(compress(texts, keep))
        if rest is not None:
            # Enough rows for the screen now; the others a chunk per tick (_scan_step).
            need = int(self.scroll_offset.y) + self._body_height + 1
            more_ids, more_texts, at = _scan(*rest, len(rest[0]), terms, max(0, need - len(ids)))
            ids, texts = ids + more_ids, texts + more_texts
            if at < len(rest[0]):
                self._view, self._view_text = ids, texts
                self._filtered_from = query
                self._pending = (rest[0], rest[1], at, terms)
                if self._scan_timer is not None:   # the screen first: this keystroke's rows
                    self._scan_timer.stop()
                    self._scan_timer = None
                self.call_after_refresh(self._start_scanning)
                return
        for term in usage_terms:   # 5h>80, 7d<=50, plan:max: on the usage cells, not the text
            test = usage_term(term)
            usage = self._usage
            keep = [test(usage.get(uid, _NO_USAGE)) for uid in ids]
            ids, texts = list(compress(ids, keep)), list(compress(texts, keep))
        if self._sort_reverse and not narrowing:
            ids, texts = ids[::-1], (texts[::-1] if texts is not None else None)
        self._view, self._view_text = ids, texts
        self._filtered_from = query
        self._remember(query, ids, texts)

    def _remember(self, query: str, ids: list[str], texts: list[str]) -> None:
        if query:
            recent = self._recent
            if len(recent) > _RECENT:
                del recent[next(iter(recent))]
            recent[(query, self._sort_reverse)] = (ids, texts)

    def _order_changed(self) -> None:
        """The order or a row's text changed: the joined text and the recent results are stale."""
        self._index = None
        self._recent.clear()

    def _indexed(self, terms: list[str]) -> tuple[list[str], list[str], list[str]]:
        """The rows of the whole order that hold the rarest term (found in the joined text),
        and the terms left to test row by row."""
        rare = sorted((t for t in terms if len(t) >= 3), key=len, reverse=True)   # longer: rarer
        if not rare:   # one or two characters are in most rows: testing each row is faster
            return self._order, self._order_text, terms
        index = self._index
        if index is None:
            index = self._index = _TextIndex(self._order_text)
        for term in rare:
            rows = index.rows(term)
            if rows is not None:
                order, texts = self._order, self._order_text
                rest = list(terms)
                rest.remove(term)
                return [order[r] for r in rows], [texts[r] for r in rows], rest
        return self._order, self._order_text, terms

    def _after_view_change(self) -> None:
        self._place_cursor()
        if self._pending is None or self.virtual_size.height <= len(self._view):
            self._set_rows(len(self._view))   # (a lazy filter's rest, and the count, once tested)
        self._scroll_to_cursor()
        self.refresh()
        if self._pending is None:
            self.post_message(self.ViewChanged(self, len(self._view), len(self._records)))

    def _place_cursor(self) -> None:
        if self._anchor is not None and self._pending is not None:
            self._scan_more(None)   # the anchored user may be in the rows not yet tested
        view = self._view
        if not view:
            self._cursor = 0
            return
        if self._anchor is not None:
            try:
                self._cursor = view.index(self._anchor)
                return
            except ValueError:
                pass
        self._cursor = min(max(self._cursor, 0), len(view) - 1)

    # -- cursor and scrolling ----------------------------------------------------------

    @property
    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        top = int(self.scroll_offset.y)
        body = self._body_height
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + body:
            self.scroll_to(y=self._cursor - body + 1, animate=False, immediate=True)

    def _move_cursor(self, row: int) -> None:
        self._whole()
        if not self._view:
            return
        self._cursor = min(max(row, 0), len(self._view) - 1)
        self._anchor = self._view[self._cursor]
        self._scroll_to_cursor()
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self._move_cursor(self._cursor + delta)

    def action_page(self, direction: int) -> None:
        self._whole()
        self._move_cursor(self._cursor + direction * self._body_height)

    def action_edge(self, end: int) -> None:
        self._whole()
        self._move_cursor(len(self._view) - 1 if end else 0)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:   # the column titles: sort by the one clicked
            x = 0
            for column, width in self._columns():
                if x < offset.x <= x + width:
                    self.sort_by(column.key)
                    return
                x += width + 1
            return
        row = int(self.scroll_offset.y) + offset.y - 1
        self._whole()
        if 0 <= row < len(self._view):
            self._move_cursor(row)
            if event.chain >= 2:
                self.post_message(self.Selected(self._view[row]))

    # -- time --------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        """Countdowns move every second; rows crossing a status edge move to their new place."""
        now = self._clock()
        due: dict[str, TokenRecord] = {}
        if self._edges_due and not self._streaming:   # a listing ended since the last tick
            self._make_edges()
        edges = self._edges
        while edges and edges[0][0] <= now:
            _, _, uid, record = heappop(edges)
            if self._records.get(uid) is record:
                due[uid] = record
        if due:
            self._apply(list(due.values()), [])
        else:
            self.refresh()

    def _set_rows(self, rows: int) -> None:
        """The scrollable height for ``rows`` rows under the header.

        Setting ``virtual_size`` lays the whole screen out again (about 9 ms at 120x40), which
        a filter keystroke would pay every time the count changes. When the vertical scrollbar
        stays as it is (shown before and after, the width the same), nothing but the scrollbar
        moves: the size is set without a layout, and the scrollbar and offset follow it."""
        new, old = Size(self.size.width, rows + 1), self.virtual_size
        if new == old:
            return
        if (old.width != new.width or not self.show_vertical_scrollbar
                or min(old.height, new.height) <= self.container_size.height):
            self.virtual_size = new
            self.call_after_refresh(self._scroll_to_cursor)   # the offset's range is known after it
            return
        self.set_reactive(ScrollView.virtual_size, new)
        bar = self.vertical_scrollbar
        bar.window_virtual_size = new.height
        bar.refresh()
        if self.scroll_y > self.max_scroll_y:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._layout = None
        self.virtual_size = Size(self.size.width, len(self._view) + 1)
        self._scroll_to_cursor()

    # -- drawing -----------------------------------------------------------------------

    def _columns(self) -> list[tuple[Column, int]]:
        width = self.scrollable_content_region.width
        if self._layout is None or self._layout[0] != width:
            self._layout = (width, layout_columns(max(0, width - 1), self._hidden))
        return self._layout[1]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._layout = None
        self._lines.clear()

    def render_lines(self, crop: Region) -> list[Strip]:
        # The width, base style, scroll offset and clock are the same for every line of a frame:
        # read once here, not per line (rich_style walks every ancestor, which cost more than
        # drawing the rows themselves).
        self._frame = (self.scrollable_content_region.width, self.rich_style, int(self.scroll_offset.y),
                       self._clock())
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        frame = self._frame
        if frame is None:
            frame = (self.scrollable_content_region.width, self.rich_style, int(self.scroll_offset.y),
                     self._clock())
        width, base, top, now = frame
        if y == 0:
            return self._header_strip(width, base)
        index = top + y - 1
        if index >= len(self._view):
            if y == 2 and not self._view and self.loaded:
                return self._message_strip(width, base)
            return Strip.blank(width, base)
        uid = self._view[index]
        record = self._records[uid]
        # A row looks the same until one of its words does: draw it once (scrolling, typing a
        # filter), and again only when a countdown it shows moves, not every second.
        marked = uid in self._marked
        times = (format_duration(record.expires_at - now) if record.expires_at else None,
                 ago(now - record.last_used if record.last_used else None),
                 token_status(record, now, self._buffer))
        key = (uid, id(record), index == self._cursor, times, width, marked, self._usage.get(uid), base)
        strip = self._lines.get(key)
        if strip is None:
            strip = self._row_strip(record, now, index == self._cursor, width, base, marked)
            self._lines[key] = strip
        return strip

    def _message_strip(self, width: int, base: Style) -> Strip:
        if self._records:
            text = f"  No user matches “{self._filter}”. Escape clears the filter."
        else:
            text = "  No users are logged in. Press l to log one in."
        style = base + self.get_component_rich_style("board--dim")
        return Strip([Segment(text, style)]).adjust_cell_length(width, base)

    def _header_strip(self, width: int, base: Style) -> Strip:
        header = base + self.get_component_rich_style("board--header")
        sorted_style = header + self.get_component_rich_style("board--header-sorted")
        segments = [Segment(" ", header)]
        for column, col_width in self._columns():
            is_sorted = column.key == self._sort_key
            mark = ("▼" if self._sort_reverse else "▲") if is_sorted else ""
            title = column.title if cell_len(column.title) + len(mark) <= col_width else column.short
            text = _fit(title + mark, col_width, column.right and not mark)
            segments.append(Segment(text, sorted_style if is_sorted else header))
            segments.append(Segment(" ", header))
        return Strip(segments).adjust_cell_length(width, header)

    def _usage_cell(self, key: str, uid: str, width: int, row_style: Style, dim: Style,
                    is_cursor: bool) -> tuple[str, Style]:
        """PLAN, or a window's percent with a small bar; a word-free mark (``!`` at >= 80,
        ``!!`` at >= 95) keeps it readable without colour."""
        cells = self._usage.get(uid, _NO_USAGE)
        if key == "plan":
            return (cells.plan or "—"), (row_style if cells.plan else dim)
        pct = getattr(cells, "p" + key)
        if pct is None:
            return "—", dim
        mark = {"high": "!", "full": "!!"}.get(level(pct), "")
        text = next((t for t in (f"{pct:.0f}%{mark}", f"{pct:.0f}{mark}", f"{pct:.0f}{mark[:1]}")
                     if len(t) <= width), f"{pct:.0f}")
        room = width - len(text) - 1
        if room >= 3:
            text = f"{bar(pct, min(room, 5))} {text}"
        style = row_style
        if mark:
            style = row_style + self.get_component_rich_style(
                "board--usage-full" if mark == "!!" else "board--usage-high")
            if is_cursor:
                style = style + self.get_component_rich_style("board--cursor")
        return text, style

    def _row_strip(self, record: TokenRecord, now: float, is_cursor: bool, width: int, base: Style,
                   marked: bool = False) -> Strip:
        status = token_status(record, now, self._buffer)
        row_style = base
        dim = base + self.get_component_rich_style("board--dim")
        if marked:
            row_style = base + self.get_component_rich_style("board--marked")
            dim = row_style
        if is_cursor:
            row_style = base + self.get_component_rich_style("board--cursor")
            dim = row_style
        status_style = base + self.get_component_rich_style(f"board--status-{status.value}")
        if is_cursor:
            status_style = status_style + self.get_component_rich_style("board--cursor")
        segments = [Segment("●" if marked else " ", row_style)]
        for column, col_width in self._columns():
            key = column.key
            style = row_style
            if key == "user":
                text = record.user_id
            elif key == "email":
                text = record.account_email or "—"
                style = row_style if record.account_email else dim
            elif key == "status":
                text, style = status_label(status), status_style
                if status is Status.ACTIVE and record.long_lived:
                    text = LONG_LIVED_LABEL
                if record.user_id in self._held:  # a word in the column that never drops, not only a colour
                    text = HELD_LABEL
                    style = base + self.get_component_rich_style("board--status-expiring")
                    if is_cursor:
                        style = style + self.get_component_rich_style("board--cursor")
            elif key == "expires":
                text = format_duration(record.expires_at - now) if record.expires_at else "—"
            elif key == "last_used":
                text = ago(now - record.last_used if record.last_used else None)
                style = row_style if record.last_used else dim
            elif key == "refreshes":
                text = str(record.refresh_count)
            elif key == "source":
                text = record.source or "—"
            elif key in ("plan", "5h", "7d"):
                text, style = self._usage_cell(key, record.user_id, col_width, row_style, dim, is_cursor)
            else:
                text = short_scopes(record.scopes)
            segments.append(Segment(_fit(text, col_width, column.right), style))
            segments.append(Segment(" ", row_style))
        return Strip(segments).adjust_cell_length(width, row_style)
