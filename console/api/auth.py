"""The master key in front of the API.

Every path but ``/health`` needs ``Authorization: Bearer <master key>`` (``LITELLM_MASTER_KEY``
or ``general_settings.master_key``), compared in constant time. A request without it, or
with a wrong one, gets 401 and a fixed line: it reaches no route, so it learns nothing
(not even whether a path exists) and changes nothing.

Without a master key the API refuses to start, except on a loopback address with an
explicit ``--insecure-no-auth``: an open token API on a reachable address is never a default.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from ..errors import UsageError

OPEN_PATHS = frozenset({"/health"})
UNAUTHORIZED = "missing or wrong master key: send Authorization: Bearer <LITELLM_MASTER_KEY>"
KEYGEN = "python -c \"import secrets; print('sk-' + secrets.token_urlsafe(32))\""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def required_master_key(master_key: str | None, host: str, insecure_no_auth: bool,
                        what: str = "the API") -> str | None:
    """The key to demand, or ``None`` for an explicitly open loopback server; else ``UsageError``."""
    key = (master_key or "").strip()
    if key:
        return key
    if not insecure_no_auth:
        raise UsageError(f"no master key is configured, so {what} would let anyone in",
                         hint=f"set LITELLM_MASTER_KEY (generate one with: {KEYGEN}), or, for a local "
                              "experiment only, --host 127.0.0.1 --insecure-no-auth")
    if not is_loopback(host):
        raise UsageError(f"--insecure-no-auth is only allowed on a loopback address, not {host!r}",
                         hint="bind --host 127.0.0.1, or set LITELLM_MASTER_KEY")
    return None


def presented_key(raw_headers) -> bytes | None:
    """The bearer credential from ASGI ``scope['headers']`` (a list of byte pairs)."""
    for name, value in raw_headers:
        if name == b"authorization":
            scheme, _, credential = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and credential.strip():
                return credential.strip()
            return None
    return None


def key_matches(presented: bytes | None, master_key: str | None) -> bool:
    if presented is None or not master_key:
        return False
    return hmac.compare_digest(presented, master_key.encode("utf-8"))


class MasterKeyMiddleware:
    """Plain ASGI (no per-request objects), so the check costs next to nothing."""

    def __init__(self, app, master_key: str | None, open_paths=OPEN_PATHS) -> None:
        self.app = app
        self.master_key = master_key
        self.open_paths = frozenset(open_paths)
        self._body = json.dumps({"error": UNAUTHORIZED}).encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.master_key is None or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        if key_matches(presented_key(scope["headers"]), self.master_key):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(self._body)).encode()),
                                (b"www-authenticate", b'Bearer realm="claude-console"')]})
        await send({"type": "http.response.body", "body": self._body})
