"""Run the emulator on loopback in a background thread, for tests and benchmarks.

The socket is bound here, before uvicorn starts, so port 0 works and `.url` is known at once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Optional, Sequence
from urllib.parse import urlencode

import uvicorn

from .app import create_app
from .state import DEFAULT_SCOPES, EmulatorState


class EmulatorServer:
    """A live emulator at `self.url`; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        state: Optional[EmulatorState] = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **config: Any,
    ) -> None:
        if state is None:
            state = EmulatorState(**config)
        elif config:
            state.configure(**config)
        self.state = state
        self.host = host
        self.port = port
        self.url: Optional[str] = None
        self.app = create_app(state)
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    # -------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> "EmulatorServer":
        """Returns once the server accepts connections; raises if it cannot start in time."""
        if self._thread is not None:
            return self
        # proto must be IPPROTO_TCP: asyncio only disables Nagle on such sockets (else ~40 ms stalls).
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._error = None

        def run() -> None:
            try:
                self._server.run(sockets=[sock])
            except BaseException as e:  # surfaced by start()
                self._error = e
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"claude-emulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                err = self._error
                self.stop()
                raise RuntimeError(f"emulator failed to start on {self.url}") from err
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- URLs a client under test needs

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.url}/v1/oauth/token"

    @property
    def redirect_uri(self) -> str:
        """The emulator's own manual-copy page, standing in for console.anthropic.com's."""
        return f"{self.url}/oauth/code/callback"

    @property
    def api_base(self) -> str:
        return self.url

    def build_authorize_url(
        self,
        code_challenge: str,
        state: str,
        *,
        redirect_uri: Optional[str] = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        client_id: Optional[str] = None,
        login_hint: Optional[str] = None,
    ) -> str:
        """The URL a real client would open, pointed at this emulator."""
        query = {
            "code": "true",
            "client_id": client_id or self.state.config.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri or self.redirect_uri,
            "scope": " ".join(scopes),
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
        if login_hint:
            query["login_hint"] = login_hint
        return f"{self.authorize_url}?{urlencode(query)}"

    # -------------------------------------------------------------- conveniences

    def approve(self, authorize_url: str, email: Optional[str] = None) -> dict:
        """Play the user clicking "Authorize" (over HTTP, like a script would).

        Raises ValueError with the provider's description if the request is refused.
        """
        payload: dict = {"url": authorize_url}
        if email:
            payload["email"] = email
        req = urllib.request.Request(
            f"{self.url}/_emulator/approve",
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read())
            except ValueError:
                detail = {"error_description": str(e)}
            raise ValueError(f"authorize refused: {detail.get('error_description', detail)}") from None

    def stats(self) -> dict:
        return self.state.stats()
