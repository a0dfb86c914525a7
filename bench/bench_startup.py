"""Start to first paint: the console with 10 users against a bare Textual app with a Footer.

Limit (issue 4): the console's median <= 1.5x the bare app's median, both measured here, in
alternating runs. Each run is a fresh interpreter (imports count: they are most of a start);
"first paint" is the first refresh after mount, with the board's rows on screen for the
console. Headless, so no terminal is timed. A report, not a test: always exits 0.

    python bench/bench_startup.py [--runs 7]
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

LIMIT = 1.5

BARE = """
import sys, time
from textual.app import App
from textual.widgets import Footer

class Bare(App):
    def compose(self):
        yield Footer()

    def on_mount(self):
        self.call_after_refresh(self.painted)

    def painted(self):
        print(time.time(), flush=True)
        self.exit()

Bare().run(headless=True)
"""

CONSOLE = """
import asyncio, sys, time
from console.app import ConsoleApp, first_page
from console.config import load_settings
from console.service import AuthService
from console.widgets.board_view import BoardView

class Timed(ConsoleApp):
    def on_mount(self):
        self.call_after_refresh(self.painted)   # the first frame (styles for other screens come after it)
        super().on_mount()

    def painted(self):
        board = self.screen.query_one(BoardView)
        assert board.view, "no rows on the first paint"
        print(time.time(), flush=True)
        self.exit()

async def main():
    service = AuthService(load_settings(), face="tui")   # what run_app does
    try:
        app = Timed(service, records=await first_page(service))
        await app.run_async(headless=True)
    finally:
        await service.aclose()

asyncio.run(main())
"""


def seed(folder: str) -> dict[str, str]:
    from console.config import load_settings
    from console.service import AuthService
    from console.tokens import TokenRecord

    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "CLAUDE_ACCESS_TOKEN", "CONSOLE_CONFIG")}
    env["CLAUDE_TOKEN_FILE"] = os.path.join(folder, "tokens.json")
    now = time.time()
    records = [TokenRecord(f"user-{i}", f"sk-ant-oat01-start-{i}-xxxx", f"sk-ant-ort01-start-{i}-yyyy",
                           now + 3600 * (i + 1), scopes=["user:inference", "user:profile"],
                           account_email=f"user{i}@example.com") for i in range(10)]

    async def put() -> None:
        service = AuthService(load_settings(env=env))
        await service.store.primary.put_many(records)
        await service.aclose()

    asyncio.run(put())
    return env


def first_paint(code: str, env: dict[str, str]) -> float:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the run failed:\n{out.stderr.strip()[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1]) - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="cc-bench-start-")
    os.chmod(folder, 0o700)
    try:
        env = seed(folder)
        first_paint(BARE, env), first_paint(CONSOLE, env)     # warm the file cache and .pyc files
        bare, console = [], []
        for _ in range(args.runs):
            bare.append(first_paint(BARE, env))
            console.append(first_paint(CONSOLE, env))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    b, c = statistics.median(bare), statistics.median(console)
    print(f"start to first paint, median of {args.runs} alternating runs (fresh interpreter each):")
    print(f"  bare Textual app with a Footer   {b * 1000:7.0f} ms")
    print(f"  claude-console, 10 users         {c * 1000:7.0f} ms")
    print(f"  ratio                            {c / b:7.2f}x   limit {LIMIT}x   {'ok' if c / b <= LIMIT else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
