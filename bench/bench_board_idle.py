"""Database time per idle minute with 5 consoles open, polling everyone vs. reading what changed.

Each console is its own process running the real app headless on a throwaway PostgreSQL
database of 100 000 users. Once all have loaded, nothing is written for ``--seconds``; the
database's own ``active_time`` (pg_stat_database: time its sessions spent executing) over that
window, scaled to a minute, is the figure. Two modes, interleaved, in the same run:

  list      every poll lists every user (what the board did before the change feed)
  whole     every poll asks the change feed; plan and usage re-read for everyone every 15 s
            (what the board did before migration 0008)
  changes   every poll asks the change feed (one statement); health every 30 s; plan and
            usage every 15 s only for the users whose facts were written since

Nine users in ten have plan and usage stored, as a refresher leaves them.

Also printed: the time the consoles themselves spent waiting on the database, and how many
polls they made (a polling-everyone board waits 4x its last listing between polls, so on a
loaded machine it polls, and costs, less). A report, not
a test: always exits 0.

    python bench/bench_board_idle.py [--users 100000] [--consoles 5] [--seconds 30] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid

SIZE = (120, 40)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_board import usage_facts  # noqa: E402  (plan and usage as the board's bench stores them)


async def console(dsn: str, key: str, mode: str) -> None:
    """One console: load, say so, then idle until stdin closes; report time spent in the tier."""
    from console.app import ConsoleApp
    from console.config import load_settings
    from console.service import AuthService
    from console.widgets.board_view import BoardView

    folder = tempfile.mkdtemp(prefix="cc-bench-idle-")
    settings = load_settings(env={}, database_url=dsn, encryption_key=key,
                             token_file=os.path.join(folder, "tokens.json"))
    service = AuthService(settings, face="tui")
    if mode == "list":   # the board as it was: no cursor, so every poll lists everyone
        async def no_cursor():
            return None
        service.change_cursor = no_cursor
    if mode in ("list", "whole"):   # every usage read is everyone's
        from console.screens import board as board_screen

        board_screen.USAGE_WHOLE_EVERY = 0.0
    tier = service.store.primary
    waited = [0.0]
    attempt = tier.attempt

    async def timed(fn, **kwargs):
        t = time.perf_counter()
        try:
            return await attempt(fn, **kwargs)
        finally:
            waited[0] += time.perf_counter() - t

    tier.attempt = timed
    polls = [0]
    for name in ("iter_users", "changes_since"):
        def counted(*args, _call=getattr(service, name), **kwargs):
            polls[0] += 1
            return _call(*args, **kwargs)
        setattr(service, name, counted)
    app = ConsoleApp(service, refresh_interval=2.0)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen.query_one(BoardView)
        while not board.loaded or app.screen._polling or not board._usage:
            await pilot.pause(0.05)
        waited[0], polls[0] = 0.0, 0
        print("loaded", flush=True)
        await done
        print(f"waited {waited[0]:.3f} {polls[0]}", flush=True)
    await service.aclose()


async def active_ms(admin, name: str) -> float:
    return float(await admin.fetchval("SELECT active_time FROM pg_stat_database WHERE datname = $1", name) or 0)


async def round_of(admin, name: str, dsn: str, key: str, mode: str, consoles: int, seconds: float):
    procs = [subprocess.Popen([sys.executable, __file__, "--console", mode, "--dsn", dsn, "--key", key],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(consoles)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "loaded"
        await asyncio.sleep(11)            # the loads' statistics reach pg_stat_database (idle flush)
        start = await active_ms(admin, name)
        await asyncio.sleep(seconds)
        waited, polls = 0.0, 0
        for p in procs:
            p.stdin.close()
        for p in procs:
            line = p.stdout.readline().split()
            if len(line) == 3:
                waited, polls = waited + float(line[1]), polls + int(line[2])
            p.wait(60)
        await asyncio.sleep(1.5)           # sessions flush their statistics as they end
        end = await active_ms(admin, name)
        return (end - start) / 1000 * 60 / seconds, waited * 60 / seconds, polls
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


async def main(args) -> None:
    import asyncpg

    from console.config import load_settings
    from console.crypto import generate_key
    from console.service import AuthService
    from console.tokens import TokenRecord

    admin = await asyncpg.connect(args.dsn, timeout=5)
    name = f"cc_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.dsn.rsplit('/', 1)[0]}/{name}"
    key = generate_key()
    try:
        folder = tempfile.mkdtemp(prefix="cc-bench-idle-")
        async with AuthService(load_settings(env={}, database_url=dsn, encryption_key=key,
                                             token_file=os.path.join(folder, "t.json"))) as service:
            now = time.time()
            await service.store.primary.put_many([
                TokenRecord(user_id=f"user-{i:07d}", access_token="sk-ant-oat01-x", refresh_token="sk-ant-ort01-y",
                            expires_at=now + 3600 + i % 7200, account_email=f"u{i}@example.com",
                            scopes=["user:inference"], created_at=now) for i in range(args.users)])
            await service.store.primary.update_facts_many(usage_facts(args.users, now))
        best: dict[str, tuple[float, float, int]] = {}
        for _ in range(args.rounds):       # interleaved; the least of each
            for mode in ("list", "whole", "changes"):
                got = await round_of(admin, name, dsn, key, mode, args.consoles, args.seconds)
                best[mode] = min(best.get(mode, got), got)
        before, whole, after = best["list"], best["whole"], best["changes"]
        print(f"{args.consoles} consoles open on {args.users:,} users, idle, {args.seconds:g} s per mode, "
              f"best of {args.rounds} interleaved rounds")
        for label, (db, waited, polls) in (("polling everyone", before), ("changes, everyone's usage", whole),
                                           ("changes, changed usage", after)):
            print(f"  database time per idle minute, {label + ':':<27} {db:8.3f} s "
                  f"(consoles waited {waited:.3f} s; {polls} polls from settle to end)")
        for label, base in (("polling everyone", before), ("everyone's usage", whole)):
            ratio = after[0] / base[0] if base[0] else float("nan")
            print(f"  ratio against {label}: {ratio:.4f}, lower is better -> "
                  f"{'better' if after[0] < base[0] else 'NOT better'}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("TEST_DATABASE_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--consoles", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--console", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for var in ("DATABASE_URL", "REDIS_URL", "CLAUDE_ACCESS_TOKEN", "CLAUDE_TOKEN_ENCRYPTION_KEY"):
        os.environ.pop(var, None)
    if args.console:
        asyncio.run(console(args.dsn, args.key, args.console))
    else:
        try:
            asyncio.run(main(args))
        except Exception as exc:  # a report, not a test
            print(f"the benchmark stopped: {type(exc).__name__}: {exc}")
    sys.exit(0)
