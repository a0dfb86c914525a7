"""SIGTERM with a rotated token held in memory only (the store's disk is full and the rescue
journal cannot be written): the refresher does not exit until the token lands, saying so; if it
never can, it exits non-zero after ``hold_timeout``, naming the user. (Root only: a tiny tmpfs.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from console.config import load_settings
from console.service import AuthService


@pytest.fixture
def held_env(tiny_disk, console_env, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the journal's folder would have to be inside a file: it cannot be made
    env = {**console_env, "CLAUDE_TOKEN_FILE": str(tiny_disk.path / "store" / "claude_tokens.json"),
           "CLAUDE_CONSOLE_JOURNAL": str(blocker / "rescue" / "journal"),
           "CLAUDE_CONSOLE_TEST_SAVE_DELAY": "1.0", "PYTHONUNBUFFERED": "1"}
    for key in ("CLAUDE_TOKEN_FILE", "CLAUDE_CONSOLE_JOURNAL"):
        monkeypatch.setenv(key, env[key])
    return env


async def _refresher_holding(env: dict, tiny_disk, emulator, login, **extra) -> tuple[subprocess.Popen, str]:
    """Start a refresher that refreshes ann while the disk fills up: ann's new token is then held
    in its memory only. Returns the process and ann's stored (now spent) refresh token."""
    service = AuthService(load_settings())
    try:
        await login(service, "ann")
        old = await service.store.get_fresh("ann")
        await service.store.put(old.evolve(expires_at=time.time() - 60), expected_version=old.version)
        spent = old.refresh_token
    finally:
        await service.aclose()
    asked = emulator.stats()["refresh_requests"]
    proc = subprocess.Popen([sys.executable, "-m", "console", "refresher", "--interval", "0.3"],
                            env={**os.environ, **env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for _ in range(200):  # the provider has answered: the save waits CLAUDE_CONSOLE_TEST_SAVE_DELAY
        if emulator.stats()["refresh_requests"] > asked:
            break
        await asyncio.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError(f"the refresher never refreshed: {proc.communicate()}")
    tiny_disk.fill()
    await asyncio.sleep(1.5)  # the save has failed: the token is held
    return proc, spent


async def test_sigterm_waits_until_the_held_token_lands(held_env, tiny_disk, emulator, login):
    proc, spent = await _refresher_holding(held_env, tiny_disk, emulator, login)
    try:
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(2.0)
        assert proc.poll() is None, proc.communicate()  # refuses to exit: the token would be lost
        tiny_disk.free()
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "not exiting yet" in err and "ann" in err and "held tokens stored; exiting" in err
    assert "Traceback" not in err
    async with AuthService(load_settings()) as after:
        stored = await after.store.get_fresh("ann")
        assert stored.refresh_token != spent and not stored.needs_login
        await after.refresh("ann", force=True)  # the landed token is the live one: nobody logged out
    assert emulator.stats()["refresh_replays"] == 0


async def test_sigterm_gives_up_after_the_hold_timeout_saying_so(held_env, tiny_disk, emulator, login):
    proc, _ = await _refresher_holding(held_env, tiny_disk, emulator, login, CLAUDE_CONSOLE_HOLD_TIMEOUT="2")
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        waited = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        tiny_disk.free()
    assert waited >= 1.5
    assert proc.returncode == 3, err
    assert "not exiting yet" in err
    assert "the new tokens of ann could not be stored before exiting" in err
    assert "Traceback" not in err
