"""``claude-console serve``: the API on uvicorn, one worker, one event loop.

One worker is the design, not a limit to lift: the service's single-flight refresh and
memory cache live in the process; scale out with replicas sharing PostgreSQL instead.
The socket is bound before uvicorn starts so ``--port 0`` works and the line printed at
start names the real port.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import sys
from typing import Any

from ..errors import UsageError
from .auth import required_master_key

HEADER_TIMEOUT = 10.0   # seconds a client has to send a request's line and headers


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, so asyncio turns Nagle off (else ~40 ms stalls on small responses).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="choose another --port, or stop what is using it") from None
    sock.set_inheritable(True)
    return sock


def refresher_hook(enabled: bool):
    """The lifespan hook that runs the background refresher, or ``None``.

    Uses ``console.refresher.start(service)`` (a coroutine returning an async stop callable),
    when that module is part of this build.
    """
    if not enabled:
        return None
    if importlib.util.find_spec("console.refresher") is None:
        raise UsageError("--refresher: the background refresher is not part of this build",
                         hint="run serve without --refresher")
    module = importlib.import_module("console.refresher")
    start = getattr(module, "start", None)
    if start is None:
        raise UsageError("--refresher: console.refresher has no start(service) function",
                         hint="run serve without --refresher")
    return start


def header_timeout_protocol(seconds: float, base: type | None = None) -> type:
    """uvicorn's HTTP protocol with a deadline for each request's line and headers.

    uvicorn (0.54) has no such setting: a client that opens a connection and sends half a
    request line would hold it (and a file descriptor) for ever. The deadline starts when a
    connection opens, or when the first bytes of a next request arrive on a kept-alive one,
    and ends when the headers are complete (uvicorn then starts a request cycle); a client
    still in its headers when it passes is disconnected. Bodies and idle keep-alive are
    uvicorn's own business."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base

    class HeaderDeadline(base):  # type: ignore[misc, valid-type]
        _deadline: Any = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(seconds, self._late)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _late(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            idle = before is None or before.response_complete
            super().data_received(data)
            if self.cycle is not before:        # a request's headers are complete
                self._disarm()
            elif idle and self._deadline is None and not self.transport.is_closing():
                self._arm()                     # a next request began on a kept-alive connection

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline


def serve(settings, *, host: str = "127.0.0.1", port: int = 4000, insecure_no_auth: bool = False,
          refresher: bool = False, access_log: bool = False, log_level: str = "warning",
          header_timeout: float = HEADER_TIMEOUT, **api_options: Any) -> int:
    import uvicorn

    from .app import create_api

    from ..store import build_store

    key = required_master_key(settings.master_key, host, insecure_no_auth)
    build_store(settings)  # a configuration error shows here as one line, not as a lifespan traceback
    app = create_api(None, settings, insecure_no_auth=insecure_no_auth, host=host,
                     on_start=refresher_hook(refresher), **api_options)
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    auth = "master key required" if key else "NO AUTHENTICATION (--insecure-no-auth)"
    print(f"claude-console API listening on http://{shown}:{sock.getsockname()[1]} ({auth}; "
          f"storage: {_tiers(settings)})", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, workers=1, lifespan="on", access_log=access_log, log_level=log_level,
                            server_header=False, date_header=False, timeout_graceful_shutdown=5,
                            backlog=2048, http=header_timeout_protocol(header_timeout), **proxy_options())
    if access_log:
        show_access_log()
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def show_access_log() -> None:
    """uvicorn logs requests at INFO, under the WARNING level its other messages use: let the
    access logger through, each line redacted (a token in a query string never lands)."""
    import logging

    from ..logs import AccessLineFilter

    logger = logging.getLogger("uvicorn.access")
    logger.setLevel(logging.INFO)
    if not any(isinstance(f, AccessLineFilter) for f in logger.filters):
        logger.addFilter(AccessLineFilter())


def proxy_options(env=None) -> dict[str, Any]:
    """Trust X-Forwarded-For only from the proxies named in FORWARDED_ALLOW_IPS. Without it the
    client is the peer address, so a header cannot pick a fresh login-start rate-limit bucket."""
    env = os.environ if env is None else env
    trusted = env.get("FORWARDED_ALLOW_IPS", "").strip()
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


def _tiers(settings) -> str:
    parts = []
    if settings.database_enabled:
        parts.append("postgres")
    if settings.redis_url:
        parts.append("redis")
    parts.append(f"file {settings.token_path}")
    return ", ".join(parts)
