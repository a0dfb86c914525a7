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


def serve(settings, *, host: str = "127.0.0.1", port: int = 4000, insecure_no_auth: bool = False,
          refresher: bool = False, access_log: bool = False, log_level: str = "warning",
          **api_options: Any) -> int:
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
                            backlog=2048, **proxy_options())
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


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
