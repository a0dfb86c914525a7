"""HTTP API throughput and latency: ``/auth/claude/oauth/status`` for a cached user.

Limits: >= 3 000 requests/s with one worker process and p99 <= 10 ms. Floor: the same
server's ``/health`` (no master key, no user lookup, one storage probe a second), measured
in the same run, so the figure reads against what this machine can do at all.

One ``claude-console serve`` process (one uvicorn worker) on 127.0.0.1, the file tier, a
user logged in through the local emulator; the load comes from ``wrk`` when it is installed
(``apt-get install wrk``), else from a Python asyncio generator in a separate process. The
generator shares the machine's cores with the server, as wrk does. Prints figures; exit 0.

    python bench/bench_api.py [--duration 5] [--connections 8] [--tool auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIN_RPS = 3000.0
MAX_P99_MS = 10.0
KEY = "sk-bench-master-key"


# -- the load generators ---------------------------------------------------------------------------

def run_wrk(url: str, headers: dict[str, str], duration: float, connections: int) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(duration))}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {int(m.group(1)): _ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": pct[50], "p99": pct[99], "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else ""}


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python(url: str, headers: dict[str, str], duration: float, connections: int) -> dict:
    """The asyncio generator, in its own process so it does not share the bench's GIL."""
    spec = json.dumps({"url": url, "headers": headers, "duration": duration, "connections": connections})
    out = subprocess.run([sys.executable, __file__, "--_loadgen", spec], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def _loadgen(spec: dict) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(spec["url"])
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in spec["headers"].items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    statuses = {"non_2xx": 0}

    async def worker(deadline: float) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        clock = time.perf_counter
        while clock() < deadline:
            start = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append(clock() - start)
            if head[9:10] != b"2":
                statuses["non_2xx"] += 1
        writer.close()

    async def main() -> float:
        began = time.perf_counter()
        deadline = began + spec["duration"]
        await asyncio.gather(*(worker(deadline) for _ in range(spec["connections"])))
        return time.perf_counter() - began

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    elapsed = asyncio.run(main())
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50": pick(0.50), "p99": pick(0.99), **statuses,
            "socket_errors": ""}


# -- the server under test ----------------------------------------------------------------------------

def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "console", "serve", "--port", "0"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"serve did not start: {line.strip()}")
    url = match.group(1)
    import urllib.request

    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/health?probe=live", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("serve never answered")


def log_in(env: dict[str, str], emulator, user: str) -> None:
    from console.config import load_settings
    from console.service import AuthService

    async def go() -> None:
        async with AuthService(load_settings(env=env)) as service:
            start = await service.start_login(user)
            pasted = emulator.approve(start.authorization_url, email=f"{user}@example.com")["pasted"]
            await service.complete_login(pasted)

    asyncio.run(go())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--_loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._loadgen:
        print(json.dumps(_loadgen(json.loads(args._loadgen))))
        return 0

    from console.emulator import EmulatorServer
    from console.cli.sandbox import sandbox_env

    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")
    generate = run_wrk if tool == "wrk" else run_python
    folder = tempfile.mkdtemp(prefix="bench-api-")
    with EmulatorServer() as emulator:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLAUDE_", "DATABASE_URL", "REDIS_URL", "CONSOLE_CONFIG"))}
        env.update(sandbox_env(emulator.url, folder), LITELLM_MASTER_KEY=KEY, LITELLM_LOG_LEVEL="WARNING")
        log_in(env, emulator, "bench")
        proc, url = start_server(env)
        try:
            status_url = f"{url}/auth/claude/oauth/status?user_id=bench"
            auth = {"Authorization": f"Bearer {KEY}"}
            generate(status_url, auth, 1.0, args.connections)  # warm-up: imports, caches, JIT-free paths
            generate(f"{url}/health", {}, 1.0, args.connections)
            health = generate(f"{url}/health", {}, args.duration, args.connections)
            status = generate(status_url, auth, args.duration, args.connections)
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(folder, ignore_errors=True)
        refreshes = emulator.stats()["refresh_requests"]

    print(f"bench_api: one serve worker on {url}, load from {tool} ({args.connections} connections, "
          f"{args.duration:g} s each), {os.cpu_count()} cores shared by server and load generator")
    for name, r in (("GET /health (floor)", health), ("GET /auth/claude/oauth/status", status)):
        extra = f"  non-2xx {r['non_2xx']}" if r["non_2xx"] else ""
        print(f"  {name:<32} {r['rps']:>8.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms{extra}")
    ok_rps = status["rps"] >= MIN_RPS
    ok_p99 = status["p99"] <= MAX_P99_MS
    print(f"  limit: status >= {MIN_RPS:.0f} req/s ({'met' if ok_rps else 'NOT met'}), "
          f"p99 <= {MAX_P99_MS:.0f} ms ({'met' if ok_p99 else 'NOT met'}); "
          f"status at {status['rps'] / health['rps']:.0%} of the /health floor")
    print(f"  provider refreshes during the run: {refreshes} (a cached user needs none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
