"""The board at scale: first rows, everything loaded, sorting, a filter keystroke, memory.

Limits (issues 4 and 14): first screen of rows <= 0.5 s after the board mounts; on PostgreSQL,
all rows loaded <= 1.3x a floor measured in the same run (the raw asyncpg listing of the same
columns plus the board's own first paint), best of interleaved rounds; elsewhere all rows
loaded, sortable and filterable <= 2 s; a filter keystroke median <= 16 ms (one frame) and
slowest <= 33 ms, typed once the board has settled (search texts packed, short-term counts
made: the time that takes after the load is printed), each key at a random point of a frame, as
a person types (see ``keystrokes``); resident memory <= 300 MB. Absolute
times swing 2-3x with other work on the machine: read them beside the floor's.
Scenarios, each in its own process so its memory is its own:

  view      the board widget alone over 100 000 synthetic records (first page, then the rest)
  file      the whole app on the file tier with 10 000 users (the issue's figure for that tier)
  postgres  the whole app on PostgreSQL with 100 000 users in a throwaway database
            (skipped when the server or the tier is missing)

"Painted" means the board's render_line drew a data row after the change. A report, not a
test: always exits 0.

    python bench/bench_board.py [--rows 100000] [--file-users 10000] [--only view,file,postgres] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

FIRST_LIMIT = 0.5
ALL_LIMIT = 2.0
KEY_MEDIAN_MS = 16.0
KEY_SLOWEST_MS = 33.0
LOADED_RATIO = 1.3
RSS_LIMIT_MB = 300.0
SIZE = (120, 40)
TYPED = "user-0004"            # typed one key at a time, then erased, then a status word


def records(n: int, now: float):
    from console.tokens import TokenRecord

    scopes = ["user:inference", "user:profile", "org:create_api_key", "user:sessions:claude_code"]
    out = []
    for i in range(n):
        kind = i % 20
        out.append(TokenRecord(
            user_id=f"user-{i:07d}", access_token=f"sk-ant-oat01-bench-{i:07d}-xxxxxxxx",
            refresh_token=None if kind == 3 else f"sk-ant-ort01-bench-{i:07d}-yyyyyyyy",
            expires_at=now + (-3600 if kind in (2, 3) else 120 if kind == 4 else 3600 + (i * 37) % 28800),
            scopes=scopes[: 2 + i % 3], account_email=f"person{i}@team{i % 97}.example",
            needs_login=kind == 5, refresh_count=i % 50, last_used=now - (i * 13) % 86400 if i % 7 else None,
            created_at=now - 86400, updated_at=now - 3600))
    return out


def usage_facts(n: int, now: float) -> list[tuple[str, dict]]:
    """Plan and usage as the refresher stores them, for nine users in ten (the rest: none yet)."""
    from console.usage import Profile, Usage, Window

    plans = [("claude_max", "default_claude_max_20x"), ("claude_max", "default_claude_max_5x"),
             ("claude_pro", None), ("claude_team", None)]
    out = []
    for i in range(n):
        if i % 10 == 9:
            continue
        kind, tier = plans[i % len(plans)]
        usage = Usage((Window("five_hour", "5h", float(i * 7 % 101), now + 3600),
                       Window("seven_day", "7d", float(i * 13 % 101), now + 86400),
                       Window("seven_day_opus", "7d opus", float(i % 50), now + 86400)))
        out.append((f"user-{i:07d}", {
            "usage": usage.to_dict(), "usage_fetched_at": now, "usage_fetched_by": "bench",
            "profile": Profile(email=f"person{i}@team{i % 97}.example", organization_type=kind,
                               rate_limit_tier=tier).to_dict(), "profile_fetched_at": now}))
    return out


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB, from /proc."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _ = line.split()
                values[key] = int(amount) / 1024
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def reset_peak() -> None:
    """Start the peak resident size over (Linux: ``5`` into clear_refs), so the figure is the
    app's own, not the seeding's that came before it in this process."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def install_paint_probe():
    """Wrap BoardView.render_line so the bench knows when a data row was really drawn."""
    from console.widgets.board_view import BoardView

    original = BoardView.render_line

    def render_line(self, y):
        strip = original(self, y)
        if y >= 1 and self._view:   # (not .view: that would finish a lazy filter inside the probe)
            self.painted_at = time.perf_counter()
        return strip

    BoardView.render_line = render_line
    BoardView.painted_at = 0.0


async def painted_after(pilot, board, since: float, timeout: float = 60.0) -> float:
    """Seconds from ``since`` until the board drew a data row."""
    deadline = time.perf_counter() + timeout
    while board.painted_at <= since:
        if time.perf_counter() > deadline:
            raise TimeoutError("the board never painted")
        await asyncio.sleep(0.001)
    return board.painted_at - since


def line(name: str, figure: str, limit: str, ok: bool) -> None:
    print(f"  {name:<44} {figure:>12}   limit {limit:<8} {'ok' if ok else 'OVER'}", flush=True)


async def keystrokes(pilot, board, type_one) -> list[float]:
    """Type TYPED, erase it, type a status word: milliseconds per keystroke until painted.

    Textual paints on a fixed grid of frames (60 a second). A key typed the instant after a
    paint always waits most of a frame, however little work it causes; a person's keys fall
    anywhere in the frame. So each key is typed at a random point of the frame after the last
    paint (seeded: every run types at the same points)."""
    import random

    frame = 1 / int(os.environ.get("TEXTUAL_FPS", "60"))
    phase = random.Random(1460)
    queries = [TYPED[:i] for i in range(1, len(TYPED) + 1)]
    queries += [TYPED[:i] for i in range(len(TYPED) - 1, -1, -1)]
    queries += ["e", "ex", "exp", "expi", "expir"]
    samples = []
    for query in queries:
        await asyncio.sleep(phase.uniform(0, frame))
        start = time.perf_counter()
        type_one(query)
        samples.append(await painted_after(pilot, board, start) * 1000)
    return samples


async def sorts(pilot, board) -> float:
    from console.widgets.board_view import SORT_KEYS

    worst = 0.0
    for key in (*SORT_KEYS, "status"):
        start = time.perf_counter()
        board.sort_by(key, reverse=False)
        worst = max(worst, await painted_after(pilot, board, start))
    return worst


def report(title: str, first: float, loaded: float, worst_sort: float, keys: list[float], note: str = "",
           peak: float | None = None, floor: float | None = None):
    peak = rss_mb()[1] if peak is None else peak
    print(title + (f"  ({note})" if note else ""), flush=True)
    line("first screen of rows", f"{first:.3f} s", f"{FIRST_LIMIT} s", first <= FIRST_LIMIT)
    if floor is None:
        line("all rows loaded", f"{loaded:.3f} s", f"{ALL_LIMIT} s", loaded <= ALL_LIMIT)
    else:
        line(f"all rows loaded (floor {floor:.3f} s, {loaded / floor:.2f}x)", f"{loaded:.3f} s",
             f"{LOADED_RATIO}x", loaded <= LOADED_RATIO * floor)
    line("loaded + slowest sort of every row", f"{loaded + worst_sort:.3f} s", f"{ALL_LIMIT} s",
         loaded + worst_sort <= ALL_LIMIT)
    line("filter keystroke, median", f"{statistics.median(keys):.1f} ms", f"{KEY_MEDIAN_MS:.0f} ms",
         statistics.median(keys) <= KEY_MEDIAN_MS)
    line("filter keystroke, slowest", f"{max(keys):.1f} ms", f"{KEY_SLOWEST_MS:.0f} ms",
         max(keys) <= KEY_SLOWEST_MS)
    line("resident memory (peak)", f"{peak:.0f} MB", f"{RSS_LIMIT_MB:.0f} MB", peak <= RSS_LIMIT_MB)


async def settled(pilot, board, timeout: float = 120.0) -> float:
    """Seconds until the board's idle work (packing, short-term counts) is done."""
    start = time.perf_counter()
    while board._pack_timer is not None or board._pack_start is not None or board._gram_timer is not None:
        if time.perf_counter() - start > timeout:
            break
        await asyncio.sleep(0.01)
    return time.perf_counter() - start


# -- scenarios ---------------------------------------------------------------------------

async def scenario_view(rows: int) -> None:
    from textual.app import App
    from textual.widgets import Footer

    from console.widgets.board_view import BoardView

    install_paint_probe()
    now = time.time()
    data = records(rows, now)

    class Bare(App):
        def compose(self):
            yield BoardView(clock=time.time)
            yield Footer()

    app = Bare()
    async with app.run_test(size=SIZE) as pilot:
        board = app.query_one(BoardView)
        start = time.perf_counter()
        page = 1000
        board.set_records(data[:page], complete=False)          # the first page
        first = await painted_after(pilot, board, start)
        while page < len(data):                                 # then the rest, in growing pages
            mark = time.perf_counter()
            board.set_records(data[page:page * 4], complete=False)
            await painted_after(pilot, board, mark)
            page *= 4
        loaded = time.perf_counter() - start
        assert board.total == len(data)
        worst_sort = await sorts(pilot, board)
        settle = await settled(pilot, board)
        keys = await keystrokes(pilot, board, board.set_filter)
    report(f"view: the board widget over {rows:,} synthetic records", first, loaded, worst_sort, keys,
           f"first page of 1 000, then pages of 3 000, 12 000, 48 000…; settled {settle:.1f} s after the sorts")


async def app_scenario(service, users: int, with_usage: int = 0) -> dict:
    """One whole-app load: first paint and all rows (with the plan and usage cells of the
    ``with_usage`` users that have them) from the board's mount, the slowest sort,
    the keystrokes once settled, peak memory, and a plain full listing for comparison."""
    from textual.widgets import Input

    from console.app import ConsoleApp, first_page
    from console.widgets.board_view import BoardView

    from console.screens.board import BoardScreen

    install_paint_probe()
    reset_peak()
    mounted_at: list[float] = []
    on_mount = getattr(BoardScreen, "_bench_on_mount", BoardScreen.on_mount)
    BoardScreen._bench_on_mount = on_mount

    def timed_mount(screen) -> None:
        mounted_at.append(time.perf_counter())
        on_mount(screen)

    BoardScreen.on_mount = timed_mount
    start = time.perf_counter()
    page = await first_page(service)             # what run_app reads before the screen opens
    app = ConsoleApp(service, refresh_interval=3600, records=page)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        board = screen.query_one(BoardView)
        first = await painted_after(pilot, board, start)
        while board.total < users or screen._polling or len(board._usage) < with_usage:
            await asyncio.sleep(0.002)   # the rest streams in, page by page, and the usage beside it
        loaded = time.perf_counter() - start
        worst_sort = await sorts(pilot, board)
        settle = await settled(pilot, board)
        await screen.action_filter()                 # what "/" does: mount and focus the field
        field = screen.query_one("#filter", Input)

        def type_one(query: str) -> None:
            field.value = query                      # Input.Changed -> the board's filter

        keys = await keystrokes(pilot, board, type_one)
        peak = rss_mb()[1]                           # before the extra listing below
    del app, board, screen
    t = time.perf_counter()
    async for _ in service.iter_users():
        pass
    poll = time.perf_counter() - t
    mounted = mounted_at[0] - start
    return {"first": first - mounted, "loaded": loaded - mounted, "sort": worst_sort, "keys": keys,
            "peak": peak, "mounted": mounted, "poll": poll, "settle": settle}


def app_report(title: str, runs: list[dict], note: str, floor: float | None = None) -> None:
    best = min(runs, key=lambda run: run["loaded"])
    keys = min(runs, key=lambda run: statistics.median(run["keys"]))["keys"]
    report(title, min(run["first"] for run in runs), best["loaded"], min(run["sort"] for run in runs), keys,
           f"{note}; best of {len(runs)} round(s); times from the board's mount, which came "
           f"{best['mounted']:.2f} s after start; settled {best['settle']:.1f} s after the sorts; "
           f"a full listing (one poll) takes {best['poll'] * 1000:.0f} ms",
           max(run["peak"] for run in runs), floor)


async def scenario_file(users: int) -> None:
    from console.config import load_settings
    from console.service import AuthService

    folder = tempfile.mkdtemp(prefix="cc-bench-board-")
    os.chmod(folder, 0o700)
    settings = load_settings(env={}, token_file=os.path.join(folder, "tokens.json"))
    service = AuthService(settings, face="tui")
    await service.store.primary.put_many(records(users, time.time()))
    try:
        app_report(f"file: the whole app, file tier, {users:,} users", [await app_scenario(service, users)],
                   "unencrypted")
    finally:
        await service.aclose()
        shutil.rmtree(folder, ignore_errors=True)


def pg_settings(database_url: str, key: str):
    from console.config import load_settings

    folder = tempfile.mkdtemp(prefix="cc-bench-board-pg-")
    os.chmod(folder, 0o700)
    return folder, load_settings(env={}, token_file=os.path.join(folder, "tokens.json"),
                                 database_url=database_url, encryption_key=key)


async def pg_round(part: str, database_url: str, key: str, rows: int, with_usage: int) -> None:
    """One round's part in a process of its own, so its peak memory is its own: ``floor`` (the
    raw listing of both tables at once, on two connections) or ``app`` (the whole app)."""
    import json

    import asyncpg

    from console.service import AuthService
    from console.store.postgres import SELECT_ALL_HIDDEN
    from console.store.postgres.facts import SELECT_BRIEF

    if part == "floor":
        raw, raw_facts = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
        try:
            t = time.perf_counter()
            listed, brief = await asyncio.gather(raw.fetch(SELECT_ALL_HIDDEN), raw_facts.fetch(SELECT_BRIEF))
            result = {"floor": time.perf_counter() - t}
            assert len(listed) == rows and len(brief) == with_usage
        finally:
            await raw.close()
            await raw_facts.close()
    else:
        folder, settings = pg_settings(database_url, key)
        service = AuthService(settings, face="tui")
        try:
            result = await app_scenario(service, rows, with_usage)
        finally:
            await service.aclose()
            shutil.rmtree(folder, ignore_errors=True)
    print("RESULT " + json.dumps(result), flush=True)


def run_part(part: str, database_url: str, key: str, rows: int, with_usage: int) -> dict:
    import json

    done = subprocess.run([sys.executable, __file__, "--scenario", f"pg-{part}", "--dsn", database_url,
                           "--rows", str(rows), "--with-usage", str(with_usage)],
                          env={**os.environ, "BENCH_KEY": key}, capture_output=True, text=True, check=False)
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not found:
        raise RuntimeError(f"the {part} round failed: {done.stderr.strip()[-2000:]}")
    return json.loads(found[-1][len("RESULT "):])


async def scenario_postgres(rows: int, dsn: str, rounds: int) -> None:
    try:
        import asyncpg

        from console.store.postgres import PostgresTier  # noqa: F401  (the tier must exist)
    except ImportError as exc:
        print(f"postgres: skipped ({exc})", flush=True)
        return
    from console.crypto import generate_key
    from console.service import AuthService

    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgres: skipped ({dsn}: {exc})", flush=True)
        return
    name = f"cc_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url, key = f"{dsn.rsplit('/', 1)[0]}/{name}", generate_key()
    folder, settings = pg_settings(database_url, key)
    try:
        service = AuthService(settings, face="tui")
        t = time.perf_counter()
        now = time.time()
        await service.store.primary.put_many(records(rows, now))
        facts = usage_facts(rows, now)
        await service.store.primary.update_facts_many(facts)
        seeded = time.perf_counter() - t
        await service.aclose()
        runs, listings = [], []
        for _ in range(max(1, rounds)):   # interleaved: the raw listing, then the app, each in its own process
            listings.append(run_part("floor", database_url, key, rows, len(facts))["floor"])
            runs.append(run_part("app", database_url, key, rows, len(facts)))
        floor = min(listings) + min(run["first"] for run in runs)
        print(f"  floor: raw asyncpg listing of the same columns (tokens, and plan and usage beside them "
              f"on a second connection) {min(listings):.3f} s (best of {len(listings)}) + the board's "
              f"first paint {min(run['first'] for run in runs):.3f} s", flush=True)
        app_report(f"postgres: the whole app, PostgreSQL, {rows:,} users, {len(facts):,} with plan and usage",
                   runs, f"encrypted at rest; seeded in {seeded:.1f} s", floor)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--file-users", type=int, default=10_000)
    parser.add_argument("--only", default="view,file,postgres")
    parser.add_argument("--dsn", default=os.environ.get("TEST_DATABASE_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rounds", type=int, default=2, help="PostgreSQL rounds (best counts)")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--with-usage", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("DATABASE_URL", "REDIS_URL", "CLAUDE_ACCESS_TOKEN", "CLAUDE_TOKEN_ENCRYPTION_KEY"):
        os.environ.pop(name, None)
    if args.scenario == "view":
        asyncio.run(scenario_view(args.rows))
    elif args.scenario == "file":
        asyncio.run(scenario_file(args.file_users))
    elif args.scenario == "postgres":
        asyncio.run(scenario_postgres(args.rows, args.dsn, args.rounds))
    elif args.scenario in ("pg-floor", "pg-app"):
        asyncio.run(pg_round(args.scenario[3:], args.dsn, os.environ["BENCH_KEY"], args.rows, args.with_usage))
    else:
        print(f"board benchmark ({SIZE[0]}x{SIZE[1]} headless, python {sys.version.split()[0]})", flush=True)
        for name in args.only.split(","):
            subprocess.run([sys.executable, __file__, "--scenario", name.strip(), "--rows", str(args.rows),
                            "--file-users", str(args.file_users), "--dsn", args.dsn, "--rounds", str(args.rounds)],
                           check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
