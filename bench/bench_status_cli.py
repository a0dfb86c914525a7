"""``claude-console status`` wall time on the file tier, against 1.5x ``python -c "import httpx"``.

A user is logged in through the provider emulator first (private temporary token file), so
status reads a real record; status needs no HTTP, so it must not pay for importing httpx.
The two commands run alternately, so a change in the machine's load hits both alike; the
figure is the median of each. A report, not a test: prints both and the limit, exits 0.

    python bench/bench_status_cli.py [--runs 15]
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
from pathlib import Path

from console.config import load_settings
from console.emulator import EmulatorServer
from console.cli.sandbox import sandbox_env
from console.service import AuthService

FACTOR = 1.5


def script() -> str:
    beside = Path(sys.executable).with_name("claude-console")
    found = str(beside) if beside.exists() else shutil.which("claude-console")
    if not found:
        raise SystemExit("claude-console is not installed next to this Python; pip install -e . first")
    return found


async def log_in(env: dict[str, str], emulator: EmulatorServer) -> None:
    async with AuthService(load_settings(env=env)) as service:
        start = await service.start_login()
        await service.complete_login(emulator.approve(start.authorization_url)["pasted"])


def wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    status_cmd = [script(), "status"]
    httpx_cmd = [sys.executable, "-c", "import httpx"]
    with EmulatorServer() as emulator, tempfile.TemporaryDirectory() as folder:
        settings_env = sandbox_env(emulator.url, f"{folder}/store")
        asyncio.run(log_in(settings_env, emulator))
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "CONSOLE_CONFIG", "CLAUDE_ACCESS_TOKEN")}
        env.update(settings_env)
        wall(status_cmd, env), wall(httpx_cmd, env)  # warm the OS caches; not counted
        status, httpx = [], []
        for _ in range(args.runs):
            status.append(wall(status_cmd, env))
            httpx.append(wall(httpx_cmd, env))
    status_ms, httpx_ms = statistics.median(status) * 1000, statistics.median(httpx) * 1000
    limit_ms = FACTOR * httpx_ms
    verdict = "within" if status_ms <= limit_ms else "OVER"
    print(f"claude-console status (file tier): median {status_ms:.0f} ms over {args.runs} runs")
    print(f'python -c "import httpx" (same run):  median {httpx_ms:.0f} ms over {args.runs} runs')
    print(f"limit: {FACTOR}x import httpx = {limit_ms:.0f} ms -> {verdict} the limit "
          f"(status = {status_ms / httpx_ms:.2f}x import httpx)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
