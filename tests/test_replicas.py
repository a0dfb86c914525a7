"""Many replicas sharing one PostgreSQL: one refresh per expiry. (A server restart mid-refresh is
tested on a private cluster in test_never_give_up.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from console.config import load_settings
from console.service import AuthService

pytestmark = pytest.mark.postgres

WORKER = Path(__file__).with_name("replica_worker.py")
TOKENS = '"LiteLLM_ClaudeOAuthTokens"'
PROCESSES, COROUTINES, ROUNDS = 4, 50, 20


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_worker(env: dict[str, str]):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **env}, cwd=str(WORKER.parent.parent))
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        err = await proc.stderr.read()
        raise AssertionError(f"replica did not start: {line!r} {err.decode()[-2000:]}")
    return proc


async def test_four_replicas_fifty_callers_one_refresh_each_round(pg_env, pg_dsn, emulator, login):
    import asyncpg

    service = AuthService(load_settings())
    await login(service, "shared", "shared@example.com")
    emulator.state.configure(latency_ms=30)
    workers = await asyncio.gather(*[start_worker(pg_env) for _ in range(PROCESSES)])
    conn = await asyncpg.connect(pg_dsn)
    try:
        for round_no in range(ROUNDS):
            before = await service.store.get_fresh("shared")
            await conn.execute(f"UPDATE {TOKENS} SET expires_at = now() - interval '1 minute' "
                               "WHERE user_id = 'shared'")
            stats = emulator.stats()
            for proc in workers:
                proc.stdin.write(f"go shared {COROUTINES}\n".encode())
            await asyncio.gather(*[proc.stdin.drain() for proc in workers])
            answers = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 60)) for proc in workers]
            after = await service.store.get_fresh("shared")
            now = emulator.stats()
            where = f"round {round_no + 1}"
            assert now["refresh_requests"] - stats["refresh_requests"] == 1, where
            assert now["refresh_replays"] == 0, where
            assert all(a["errors"] == [] for a in answers), (where, answers)
            assert all(a["tokens"] == [sha(after.access_token)] for a in answers), where
            assert after.refresh_count == before.refresh_count + 1, where
            assert after.version == before.version + 1 and after.refresh_token != before.refresh_token, where
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.stdin.write(b"quit\n")
        for proc in workers:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
        await conn.close()
        await service.aclose()


async def test_a_late_writer_in_another_process_is_refused(pg_env, emulator, login):
    """A process holding an older version tries to save: refused, newest token kept."""
    service = AuthService(load_settings())
    await login(service, "alice")
    stale = await service.store.get_fresh("alice")
    fresh = await service.refresh("alice")
    script = ("import asyncio, sys\n"
              "from console.service import AuthService\n"
              "from console.tokens import TokenRecord\n"
              "async def main():\n"
              "    svc = AuthService()\n"
              f"    old = TokenRecord(user_id='alice', access_token='sk-ant-oat01-late', refresh_token='x',\n"
              f"                      expires_at=9e9, version={stale.version})\n"
              "    try:\n"
              f"        await svc.store.put(old, {stale.version})\n"
              "    except Exception as exc:\n"
              "        print(type(exc).__name__, exc)\n"
              "    finally:\n"
              "        await svc.aclose()\n"
              "asyncio.run(main())\n")
    done = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
                                                env={**os.environ, **pg_env})
    out = (await done.stdout.read()).decode()
    await done.wait()
    try:
        assert out.startswith("StaleWrite") and "newer token was kept" in out
        kept = await service.store.get_fresh("alice")
        assert kept.access_token == fresh.access_token and kept.version == fresh.version
    finally:
        await service.aclose()
