"""Hostile and slow clients of ``serve`` and ``web`` (issue 13): half-open connections are closed
after the header timeout, ``--access-log`` logs requests (redacted), the web console never logs
a query string."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from .helpers import AUTH, KEY, ServeProcess

pytestmark = pytest.mark.e2e
SECRET = "sk-ant-oat01-" + "Q" * 40


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "LITELLM_MASTER_KEY"}, **extra}


def _closed_after(url: str, first: bytes, limit: float) -> float:
    """Seconds until the server closes a connection that sent ``first`` and then nothing."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=limit + 5) as sock:
        started = time.monotonic()
        if first:
            sock.sendall(first)
        while True:
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                return time.monotonic() - started


# (what a client sends, then stalls)
HALF_OPEN = [
    b"",                                        # connects, says nothing
    b"GET /hea",                                # half a request line
    b"GET /health HTTP/1.1\r\nHost: x\r\n",     # headers never finished
]


@pytest.fixture(scope="module")
def slow_server():
    server = ServeProcess(_env(LITELLM_MASTER_KEY=KEY), "--header-timeout", "1").start()
    yield server
    server.stop()


@pytest.mark.parametrize("first", HALF_OPEN, ids=["silent", "half line", "half headers"])
def test_half_open_connections_are_closed_after_the_header_timeout(slow_server, first):
    took = _closed_after(slow_server.url, first, limit=1)
    assert 0.8 <= took < 3, took


def test_a_kept_alive_connection_gets_the_deadline_again_for_its_next_request(slow_server):
    host, port = slow_server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=6) as sock:
        sock.sendall(b"GET /health?probe=live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /heal")              # uvicorn's keep-alive timer stops on these bytes
        started = time.monotonic()
        while sock.recv(4096):
            pass
        assert time.monotonic() - started < 3


def test_requests_that_arrive_in_time_are_answered(slow_server):
    response = httpx.get(f"{slow_server.url}/auth/claude/users", headers=AUTH)
    assert response.status_code == 200


def test_access_log_logs_requests_redacted():
    proc = subprocess.Popen([sys.executable, "-m", "console", "serve", "--port", "0", "--access-log"],
                            env=_env(LITELLM_MASTER_KEY=KEY, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"listening on (http://\S+)", proc.stderr.readline()).group(1)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/health", params={"probe": "live", "code": SECRET}, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.get(f"{url}/auth/claude/users", headers=AUTH)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("/auth/claude/users" in line for line in lines):
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    text = "".join(lines)
    assert '"GET /auth/claude/users HTTP/1.1" 200' in text, text
    assert "/health?probe=live&code=***" in text and SECRET not in text and KEY not in text


def test_serve_refuses_a_header_timeout_that_is_not_a_number_of_seconds():
    for value in ("nan", "0", "-1", "abc", "1e9"):
        result = subprocess.run([sys.executable, "-m", "console", "serve", "--header-timeout", value],
                                env=_env(LITELLM_MASTER_KEY=KEY), capture_output=True, text=True, timeout=30)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "--header-timeout" in lines[0], result


def test_the_web_console_never_logs_a_query_string():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "console", "web", "--port", str(port)],
                            env=_env(LITELLM_MASTER_KEY=KEY, COLUMNS="300", PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/login", params={"key": KEY, "token": SECRET}, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        httpx.get(f"http://127.0.0.1:{port}/", params={"key": KEY}, timeout=2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("GET /" in line for line in lines) < 2:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    text = "".join(lines)
    assert "GET /login?…" in text and "GET /?…" in text, text
    assert KEY not in text and SECRET not in text
