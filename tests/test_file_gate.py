"""Lock before you spend, file tier: a restore (or key rotation) rewriting the token file holds
the gate exclusively; a refresh takes it shared before the request goes out, so it waits before
spending, never after the provider rotated. Refreshes share the gate: none waits for another."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from console.config import load_settings
from console.errors import StorageError
from console.service import AuthService

# Another process restores one user with put_many; its file write takes 2 s (a big file).
SLOW_RESTORE = """
import asyncio, sys, time
from console.store import file as file_mod
from console.service import AuthService

real = file_mod.atomic_write

def slow(path, data, **kw):
    print("rewriting", flush=True)
    time.sleep(2.0)
    real(path, data, **kw)

file_mod.atomic_write = slow

async def main():
    async with AuthService() as service:
        record = await service.store.get_fresh("bob")
        await service.store.put_many([record.evolve(organization_name="restored")], {"bob": record.version})
    print("restored", flush=True)

asyncio.run(main())
"""


async def test_a_restore_holding_the_file_makes_a_refresh_wait_before_spending(console_env, emulator, login):
    service = AuthService(load_settings())
    try:
        await login(service, "ann")
        await login(service, "bob")
        before = await service.store.get_fresh("ann")
        restore = subprocess.Popen([sys.executable, "-c", SLOW_RESTORE], env={**os.environ, **console_env},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = await asyncio.to_thread(restore.stdout.readline)
        assert line.strip() == "rewriting", restore.stderr.read()
        asked = emulator.stats()["refresh_requests"]
        refreshing = asyncio.ensure_future(service.refresh("ann", force=True))
        await asyncio.sleep(1.0)
        assert emulator.stats()["refresh_requests"] == asked  # not spent while the restore holds the file
        assert not refreshing.done()
        out, err = await asyncio.to_thread(restore.communicate, timeout=30)
        assert restore.returncode == 0 and "restored" in out, err
        after = await asyncio.wait_for(refreshing, 30)
        assert after.refresh_count == before.refresh_count + 1 and not after.needs_login
        assert (await service.store.get_fresh("bob")).organization_name == "restored"
        assert emulator.stats()["refresh_replays"] == 0
    finally:
        await service.aclose()


async def test_a_refresh_that_cannot_pass_the_gate_spends_nothing(console_env, emulator, login):
    service = AuthService(load_settings())
    try:
        await login(service, "ann")
        tier = service.store.primary
        tier.gate_timeout = 0.3
        from console.store.fsutil import take_lock

        held = await take_lock(tier._gate)  # a key rotation in progress
        asked = emulator.stats()["refresh_requests"]
        started = time.monotonic()
        try:
            try:
                await service.refresh("ann", force=True)
                raise AssertionError("refreshed through a held gate")
            except StorageError as exc:
                assert "nothing was refreshed" in exc.message
        finally:
            os.close(held)
        assert time.monotonic() - started < 5
        assert emulator.stats()["refresh_requests"] == asked
        assert not (await service.refresh("ann", force=True)).needs_login  # the token was not spent
    finally:
        await service.aclose()


async def test_refreshes_share_the_gate(console_env, emulator, login):
    """Concurrent refreshes of different users (two processes' worth, here two services) do not
    queue behind one HTTP call: with the provider answering in 0.5 s, four take about 0.5 s."""
    one, two = AuthService(load_settings()), AuthService(load_settings())
    try:
        for uid in ("a1", "a2", "b1", "b2"):
            await login(one, uid)
        emulator.state.configure(latency_ms=500)
        started = time.monotonic()
        await asyncio.gather(one.refresh("a1"), one.refresh("a2"), two.refresh("b1"), two.refresh("b2"))
        assert time.monotonic() - started < 1.5
    finally:
        emulator.state.configure(latency_ms=0)
        await one.aclose()
        await two.aclose()
