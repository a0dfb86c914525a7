"""Usage polling: 10 000 due users, emulator at 20 ms latency, concurrency 32.

Floor: the refresher's usage pass (lease claims in PostgreSQL, one GET per user, the answer
parsed and stored) reaches >= 0.7x the rate of a raw httpx loop sending the same 10 000
requests to the same emulator at the same concurrency, and exactly 10 000 usage requests
reach the emulator. The emulator runs in its own process; the database is created and dropped
here. A report, not a test: prints the figure, the floor and the ratio, exits 0.

    python bench/bench_usage.py [--users 10000] [--concurrency 32] [--latency-ms 20]
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

RATIO_FLOOR = 0.7


def emulator_process(conn, users: int, latency_ms: float) -> None:
    """Serve the emulator; mint ``users`` access tokens (with user:profile) and send them back."""
    from console.emulator import EmulatorServer
    from console.emulator.state import DEFAULT_CLIENT_ID, s256

    server = EmulatorServer(latency_ms=latency_ms)
    server.start()
    server.state.configure(usage_shape="both", usage_windows={"five_hour": 42, "seven_day": 81,
                                                              "seven_day_opus": None})
    verifier = "v" * 64
    state = server.state
    tokens = []
    for i in range(users):
        code = state.authorize({"client_id": DEFAULT_CLIENT_ID, "redirect_uri": server.redirect_uri,
                                "response_type": "code", "code_challenge": s256(verifier),
                                "code_challenge_method": "S256", "state": f"s{i}",
                                "scope": "user:profile user:inference"},
                               email=f"user-{i:05d}@example.com")["code"]
        issued = state.exchange({"code": code, "client_id": DEFAULT_CLIENT_ID,
                                 "redirect_uri": server.redirect_uri, "code_verifier": verifier})
        tokens.append((issued["access_token"], issued["refresh_token"]))
    conn.send((server.url, tokens))
    conn.recv()  # until told to stop
    server.stop()


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as resp:
        return json.loads(resp.read())


async def raw_loop(settings, tokens: list, concurrency: int) -> float:
    """The floor: the same GETs, same headers, no lease, no parsing, no storage."""
    from console.oauth import OAuthClient
    from console.refresher import provider_client

    http = provider_client(settings, concurrency)
    client = OAuthClient(settings, http=http)
    slots = asyncio.Semaphore(concurrency)

    async def one(token: str) -> None:
        async with slots:
            response = await client.api("GET", "/api/oauth/usage", token)
            response.json()

    try:
        t = time.perf_counter()
        await asyncio.gather(*(one(access) for access, _ in tokens))
        return time.perf_counter() - t
    finally:
        await http.aclose()


async def run(dsn: str, url: str, tokens: list, concurrency: int) -> None:
    import asyncpg

    from console.cli.sandbox import sandbox_env
    from console.config import load_settings
    from console.crypto import generate_key
    from console.oauth import OAuthClient
    from console.refresher import provider_client
    from console.service import AuthService
    from console.tokens import TokenRecord

    admin = await asyncpg.connect(dsn, timeout=5)
    name = f"cc_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    folder = tempfile.mkdtemp(prefix="cc-bench-usage-")
    http = None
    try:
        env = {**sandbox_env(url, folder), "DATABASE_URL": f"{dsn.rsplit('/', 1)[0]}/{name}",
               "CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()}
        settings = load_settings(env=env, database_pool_size=concurrency + 4, max_retries=0)
        floor_took = await raw_loop(settings, tokens, concurrency)
        http = provider_client(settings, concurrency)
        async with AuthService(settings, oauth=OAuthClient(settings, http=http), face="refresher") as service:
            now = time.time()
            await service.store.primary.put_many([
                TokenRecord(user_id=f"user-{i:05d}", access_token=access, refresh_token=refresh,
                            expires_at=now + 7200, scopes=["user:profile", "user:inference"],
                            created_at=now - 60)
                for i, (access, refresh) in enumerate(tokens)])
            before = stats(url)
            t = time.perf_counter()
            asked = await service.poll_usage(concurrency=concurrency)
            took = time.perf_counter() - t
            after = stats(url)
            sample = (await service.usage_of(["user-00000"]))["user-00000"]
        requests = after["usage_requests"] - before["usage_requests"]
        ours, floor = len(tokens) / took, len(tokens) / floor_took
        ratio = ours / floor
        stored = sample.usage_model is not None and sample.usage_model.window("7d").utilization == 81.0
        print(f"raw httpx loop: {len(tokens):,} usage GETs in {floor_took:.2f} s = {floor:.0f}/s (the floor)")
        print(f"usage poll:     {asked:,} users in {took:.2f} s = {ours:.0f}/s at concurrency {concurrency}")
        print(f"ratio {ratio:.2f} (floor {RATIO_FLOOR}) -> {'ok' if ratio >= RATIO_FLOOR else 'UNDER'}")
        print(f"usage requests at the emulator: {requests:,} (must be exactly {len(tokens):,}) -> "
              f"{'ok' if requests == len(tokens) else 'WRONG'}; answers stored: {'ok' if stored else 'WRONG'}")
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
        url, tokens = ours.recv()
        print(f"emulator at {url} ({args.latency_ms:g} ms latency), {len(tokens):,} users minted")
        asyncio.run(run(args.dsn, url, tokens, args.concurrency))
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
