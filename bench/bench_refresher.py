"""The background refresher: 10 000 expiring users, emulator at 20 ms latency, concurrency 32.

Floor: >= 500 refreshes per second, and exactly one refresh request per user (10 000) reaching
the emulator, with no replayed refresh token. The emulator runs in its own process (so it
does not share this one's CPU lock); its users are minted there and stored here through the
PostgreSQL tier, in a database this script creates and drops. A report, not a test: prints
the figures, exits 0.

    python bench/bench_refresher.py [--users 10000] [--concurrency 32] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
import urllib.request
import uuid

FLOOR = 500.0


def emulator_process(conn, users: int, latency_ms: float) -> None:
    """Serve the emulator; mint ``users`` token pairs first and send them, with the URL, back."""
    from console.emulator import EmulatorServer
    from console.emulator.state import DEFAULT_CLIENT_ID, s256

    server = EmulatorServer(latency_ms=latency_ms)
    server.start()
    verifier = "v" * 64
    state = server.state
    pairs = []
    for i in range(users):
        code = state.authorize({"client_id": DEFAULT_CLIENT_ID, "redirect_uri": server.redirect_uri,
                                "response_type": "code", "code_challenge": s256(verifier),
                                "code_challenge_method": "S256", "state": f"s{i}"},
                               email=f"user-{i:05d}@example.com")["code"]
        issued = state.exchange({"code": code, "client_id": DEFAULT_CLIENT_ID,
                                 "redirect_uri": server.redirect_uri, "code_verifier": verifier})
        pairs.append((issued["access_token"], issued["refresh_token"]))
    conn.send((server.url, pairs))
    conn.recv()  # until told to stop
    server.stop()


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as resp:
        return json.loads(resp.read())


async def run(dsn: str, url: str, pairs: list, concurrency: int) -> None:
    import asyncpg

    from console.config import load_settings
    from console.crypto import generate_key
    from console.oauth import OAuthClient
    from console.refresher import provider_client, run_once
    from console.cli.sandbox import sandbox_env
    from console.service import AuthService
    from console.tokens import TokenRecord

    admin = await asyncpg.connect(dsn, timeout=5)
    name = f"cc_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    folder = tempfile.mkdtemp(prefix="cc-bench-refresher-")
    http = None
    try:
        env = {**sandbox_env(url, folder), "DATABASE_URL": f"{dsn.rsplit('/', 1)[0]}/{name}",
               "CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()}
        settings = load_settings(env=env, database_pool_size=concurrency + 4, max_retries=0)
        http = provider_client(settings, concurrency)
        async with AuthService(settings, oauth=OAuthClient(settings, http=http), face="refresher") as service:
            now = time.time()
            await service.store.primary.put_many([
                TokenRecord(user_id=f"user-{i:05d}", access_token=access, refresh_token=refresh,
                            expires_at=now + 60, scopes=["user:inference"], created_at=now - 3600)
                for i, (access, refresh) in enumerate(pairs)])
            before = stats(url)
            t = time.perf_counter()
            counts = await run_once(service, concurrency=concurrency)
            took = time.perf_counter() - t
            after = stats(url)
        requests = after["refresh_requests"] - before["refresh_requests"]
        replays = after["refresh_replays"] - before["refresh_replays"]
        rate = counts.refreshed / took
        print(f"refresher pass: {counts}")
        print(f"{counts.refreshed:,} refreshes in {took:.2f} s = {rate:.0f} refreshes/s at concurrency "
              f"{concurrency} (floor {FLOOR:.0f}/s) -> {'ok' if rate >= FLOOR else 'UNDER'}")
        print(f"refresh requests at the emulator: {requests:,} (must be exactly {len(pairs):,}); replays: "
              f"{replays} (must be 0) -> {'ok' if requests == len(pairs) and replays == 0 else 'WRONG'}")
    finally:
        if http is not None:
            await http.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("TEST_DATABASE_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    try:
        import asyncpg  # noqa: F401
    except ImportError as exc:
        print(f"skipped: {exc}")
        return 0
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=emulator_process, args=(theirs, args.users, args.latency_ms), daemon=True)
    child.start()
    try:
        if not ours.poll(300):
            print("skipped: the emulator process did not start (see its error above)")
            return 0
        url, pairs = ours.recv()
        print(f"emulator at {url} ({args.latency_ms:g} ms latency), {len(pairs):,} users minted")
        asyncio.run(run(args.dsn, url, pairs, args.concurrency))
    except OSError as exc:
        print(f"skipped: PostgreSQL is not reachable ({exc})")
    finally:
        ours.send("stop")
        child.join(10)
        if child.is_alive():
            child.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
