"""Pieces the API tests share: the token scan, a live server thread, a login through the API."""

from __future__ import annotations

import importlib.util
import re
import socket
import threading
import time

import uvicorn

from support.waiting import wait_for_sync

HAVE_POSTGRES = importlib.util.find_spec("console.store.postgres") is not None
KEY = "sk-test-master-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
START, EXCHANGE, STATUS = "/auth/claude/oauth/start", "/auth/claude/oauth/exchange", "/auth/claude/oauth/status"
# Any Anthropic access or refresh token (the emulator issues sk-ant-oat01-... and sk-ant-ort01-...),
# masked or not: the API shows neither, in any form.
TOKEN_RE = re.compile(r"sk-ant-o[ar]t")


def assert_no_tokens(text: str, where: str = "response") -> None:
    match = TOKEN_RE.search(text)
    assert match is None, f"a token leaked in a {where}: ...{text[max(0, match.start() - 40):match.end() + 20]}..."


async def scan_response(response) -> None:
    """An httpx response hook: fail the test if a body or header carries a token."""
    await response.aread()
    assert_no_tokens(response.text)
    assert_no_tokens(str(response.headers), "response header")


class ApiServer:
    """An ASGI app on uvicorn in a thread, on 127.0.0.1 and a free port, lifespan on."""

    def __init__(self, app) -> None:
        self.app = app
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> "ApiServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, lifespan="on", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)

        def run() -> None:
            try:
                self._server.run(sockets=[sock])
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="api-server", daemon=True)
        self._thread.start()
        started = False
        try:
            wait_for_sync(lambda: self._server.started or not self._thread.is_alive(), timeout,
                          what=f"the API server to start on {self.url}", interval=0.01)
            started = self._server.started
        finally:
            if not started:
                self.stop()
        assert started, f"the API server stopped before it started on {self.url}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def login_via_api(client, emulator, user_id: str, email: str | None = None) -> dict:
    """start -> the user approves at the emulator -> exchange with CODE#STATE, all over the API."""
    started = await client.get("/auth/claude/oauth/start", params={"user_id": user_id}, headers=AUTH)
    assert started.status_code == 200, started.text
    approved = emulator.approve(started.json()["authorization_url"], email=email or f"{user_id}@example.com")
    done = await client.post("/auth/claude/oauth/exchange", json={"code": approved["pasted"]}, headers=AUTH)
    assert done.status_code == 200, done.text
    return done.json()


class ServeProcess:
    """``python -m console serve --port 0`` in a subprocess; ``.url`` once it answers."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.args = args
        self.url = ""
        self.proc = None
        self.log: list[str] = []

    def start(self, timeout: float = 30.0) -> "ServeProcess":
        import subprocess
        import sys
        import urllib.request

        self.proc = subprocess.Popen([sys.executable, "-m", "console", "serve", "--port", "0", *self.args],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"serve did not start: {line!r}")
        self.url = match.group(1)
        self.log = [line]
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

        def live() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/health?probe=live", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return self.proc.poll() is not None  # exited: stop waiting

        answered = False
        try:
            wait_for_sync(live, timeout, what=f"serve at {self.url} to answer", interval=0.05)
            answered = self.proc.poll() is None
        finally:
            if not answered:
                self.stop()
        assert answered, f"serve at {self.url} exited before it answered: {self.log}"
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
