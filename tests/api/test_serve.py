"""``claude-console serve`` as a process: refusing to start open, answering, stopping cleanly,
and two replicas on one PostgreSQL database sharing one refresh."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from console.crypto import generate_key
from console.service import AuthService

from support.waiting import wait_for

from .helpers import AUTH, HAVE_POSTGRES, KEY, ServeProcess, assert_no_tokens, scan_response

pytestmark = pytest.mark.e2e
HOOKS = {"response": [scan_response]}  # every response is scanned for tokens


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_MASTER_KEY"}
    env.update(extra)
    return env


def _serve(env, *args, timeout=30):
    return subprocess.run([sys.executable, "-m", "console", "serve", "--port", "0", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_serve_refuses_to_start_without_a_master_key(console_env):
    result = _serve(_env())
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no master key" in lines[0] and "LITELLM_MASTER_KEY" in lines[0]
    result = _serve(_env(), "--insecure-no-auth", "--host", "0.0.0.0")
    assert result.returncode == 2 and "loopback" in result.stderr


def test_serve_answers_and_the_health_verb_probes_it(console_env):
    server = ServeProcess(_env(LITELLM_MASTER_KEY=KEY)).start()
    try:
        assert "master key required" in server.log[0]
        assert httpx.get(f"{server.url}/auth/claude/users").status_code == 401
        assert httpx.get(f"{server.url}/auth/claude/users", headers=AUTH).json()["count"] == 0
        probe = subprocess.run([sys.executable, "-m", "console", "health", "--url", f"{server.url}/health"],
                               env=_env(), capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert "ok" in probe.stdout and "file" in probe.stdout
    finally:
        code = server.stop()
    # uvicorn shuts down gracefully on SIGTERM (lifespan closes the service), then re-raises it.
    assert code in (0, -15)
    assert not [line for line in server.log[1:] if "Traceback" in line or "ERROR" in line], server.log
    silent = subprocess.run([sys.executable, "-m", "console", "health", "--url", f"{server.url}/health"],
                            env=_env(), capture_output=True, text=True, timeout=30)
    assert silent.returncode == 1 and "not answering" in silent.stderr


def test_insecure_no_auth_on_loopback_serves_without_a_key(console_env):
    with ServeProcess(_env(), "--insecure-no-auth") as server:
        assert "NO AUTHENTICATION" in server.log[0]
        assert httpx.get(f"{server.url}/auth/claude/users").status_code == 200


@pytest.fixture
def race_dsn(request) -> str:
    if not HAVE_POSTGRES:
        pytest.skip("console/store/postgres.py does not exist yet")
    return request.getfixturevalue("pg_dsn")


@pytest.mark.postgres
async def test_two_serve_processes_on_one_database_share_one_refresh(console_env, settings, emulator, login,
                                                                     race_dsn):
    dsn = race_dsn
    key = generate_key()
    pg_settings = settings.replace(database_url=dsn, encryption_key=key)
    emulator.state.configure(access_ttl=120)  # under the 300 s buffer: the token is expiring
    async with AuthService(pg_settings) as svc:
        await login(svc, "race")
        assert (await svc.get_record("race")).status(buffer=pg_settings.refresh_buffer).value == "expiring"
    emulator.state.configure(access_ttl=3600, latency_ms=300)

    env = _env(LITELLM_MASTER_KEY=KEY, DATABASE_URL=dsn, CLAUDE_TOKEN_ENCRYPTION_KEY=key)
    with ServeProcess(env) as one, ServeProcess(env) as two:
        async with httpx.AsyncClient(headers=AUTH, timeout=30, event_hooks=HOOKS) as client:
            for server in (one, two):  # warm each pool, so the race is about the refresh
                warm = await client.get(f"{server.url}/auth/claude/oauth/status", params={"user_id": "race"})
                assert warm.json()["status"] == "expiring"
            calls = [client.post(f"{server.url}/auth/claude/oauth/refresh",
                                 json={"user_id": "race", "force": False})
                     for server in (one, two) for _ in range(8)]
            responses = await asyncio.gather(*calls)
        logs = one.log + two.log
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.json()["refresh_count"] == 1 and response.json()["status"] == "active"
    assert emulator.stats()["refresh_requests"] == 1
    assert_no_tokens("".join(logs), "server log")
    async with AuthService(pg_settings) as svc:
        record = await svc.get_record("race")
        assert record.refresh_count == 1 and record.version >= 2


async def test_serve_with_refresher_refreshes_an_expiring_user_in_the_background(console_env, service, emulator,
                                                                                 login):
    emulator.state.configure(access_ttl=120)  # inside the refresh window from the start
    await login(service, "idle")
    emulator.state.configure(access_ttl=3600)
    with ServeProcess(_env(LITELLM_MASTER_KEY=KEY), "--refresher") as server:
        async with httpx.AsyncClient(headers=AUTH, timeout=10, event_hooks=HOOKS) as client:
            async def refreshed() -> dict | None:
                report = (await client.get(f"{server.url}/auth/claude/oauth/status",
                                           params={"user_id": "idle"})).json()
                return report if report["refresh_count"] == 1 else None

            report = await wait_for(refreshed, 10.0, what="the refresher to refresh user idle")
            metrics = (await client.get(f"{server.url}/metrics")).text
    assert report["refresh_count"] == 1 and report["status"] == "active"
    assert emulator.stats()["refresh_requests"] == 1
    assert 'claude_console_refreshes_total{result="ok"} 1.0' in metrics  # counted through the service hook


def test_refresher_flag_fails_in_one_line_when_the_module_is_missing(monkeypatch):
    from console.api import serve as serve_mod

    monkeypatch.setattr(serve_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(serve_mod.UsageError, match="not part of this build"):
        serve_mod.refresher_hook(True)
    assert serve_mod.refresher_hook(False) is None
