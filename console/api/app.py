"""The HTTP API: the seed's OAuth endpoints and a few more, each one call into ``AuthService``.

No handler talks to a store or the provider: it validates the request, calls the service,
and shapes the answer. Errors leave as ``{"error": "<one line>"}`` with a status that says
whose move it is (4xx the caller's, 502 the provider's, 503 storage's). No response carries
a refresh token; only ``/auth/claude/oauth/token`` carries an access token (master key
required, audited, rate limited per user).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..config import Settings
from ..errors import (AccountBlocked, ConsoleError, CryptoError, NeedsLogin, NotLoggedIn, OAuthError, StaleWrite,
                      StorageError, TierUnavailable)
from .. import oauth
from . import schemas
from .auth import MasterKeyMiddleware, key_matches, presented_key, required_master_key
from .metrics import CONTENT_TYPE, ApiMetrics
from .openapi import document
from .ratelimit import TokenBuckets
from .schemas import RequestRejected

log = logging.getLogger("console.api")

HEALTH_TTL = 1.0       # /health is open to all: at most one storage probe per second
LOGIN_BURST = 10       # login starts per client at once ...
LOGIN_PER_MINUTE = 10.0  # ... then this many a minute
TOKEN_BURST = 10       # access tokens handed out per user at once ...
TOKEN_PER_MINUTE = 30.0  # ... then this many a minute


def status_for(exc: ConsoleError) -> int:
    """The HTTP status of a service error: whose move it is."""
    if isinstance(exc, TierUnavailable):
        return 503
    if isinstance(exc, StaleWrite):
        return 409
    if isinstance(exc, (CryptoError, StorageError)):
        return 500  # unreadable or corrupt storage: an operator must act
    if isinstance(exc, AccountBlocked):
        return 409  # Claude refused the organization: an operator must act, not a retry
    if isinstance(exc, OAuthError):
        return 502  # the provider failed; tokens untouched (invalid_grant becomes NeedsLogin/LoginError)
    if isinstance(exc, NotLoggedIn):
        return 404
    if isinstance(exc, NeedsLogin):
        return 409
    return 400  # LoginError, UsageError and the rest: the caller must change the request


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Map refusals and service errors to JSON; log anything unexpected, show one line."""
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestRejected as exc:
            return error(exc.status, exc.message)
        except ConsoleError as exc:
            status = status_for(exc)
            if status >= 500:
                log.warning("%s %s: %s", request.method, request.url.path, exc)
            return error(status, str(exc))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error(500, "internal error; the server log has the details")

    return run


class _Api:
    """State of one app: the service (made in the lifespan unless given), metrics, limits."""

    def __init__(self, service, settings: Settings, master_key: str | None, *, login_burst: int,
                 login_per_minute: float, max_body: int, health_ttl: float,
                 on_start: Callable[[Any], Awaitable[Any]] | None) -> None:
        self.service = service
        self.owns_service = service is None
        self.settings = settings
        self.master_key = master_key
        self.max_body = max_body
        self.metrics = ApiMetrics()
        self.login_limit = TokenBuckets(login_burst, login_per_minute)
        self.token_limit = TokenBuckets(TOKEN_BURST, TOKEN_PER_MINUTE)
        self.health_ttl = health_ttl
        self._health: tuple[float, list] | None = None
        self._health_lock = asyncio.Lock()
        self._on_start = on_start
        self._openapi = document()
        if service is not None:
            service.add_listener(self.metrics.on_event)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        if self.service is None:
            from ..service import AuthService

            self.service = AuthService(self.settings, face="api")
            self.service.add_listener(self.metrics.on_event)
        background = await self._on_start(self.service) if self._on_start else None
        try:
            yield
        finally:
            if background is not None:
                await background()
            if self.owns_service:
                await self.service.aclose()
                self.service = None

    # -- helpers -------------------------------------------------------------------------

    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def _tier_health(self) -> list:
        """The service's health, shared by callers within ``health_ttl`` seconds."""
        cached = self._health
        if cached is not None and time.monotonic() - cached[0] < self.health_ttl:
            return cached[1]
        async with self._health_lock:
            cached = self._health
            if cached is not None and time.monotonic() - cached[0] < self.health_ttl:
                return cached[1]
            tiers = await self.service.health()
            self._health = (time.monotonic(), tiers)
            return tiers

    # -- endpoints -----------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        query = schemas.read_query(request, schemas.START_QUERY)
        wait = self.login_limit.take(self._client(request))
        if wait > 0:
            self.metrics.login_starts_limited.inc()
            seconds = max(1, int(wait + 0.999))
            return error(429, f"too many login starts from this client; retry in {seconds}s",
                         headers={"Retry-After": str(seconds)})
        start = await self.service.start_login(query.get("user_id"))
        return JSONResponse({"authorization_url": start.authorization_url, "state": start.state,
                             "user_id": start.user_id, "expires_at": start.expires_at,
                             "expires_in": int(start.expires_at - time.time())})

    async def exchange(self, request: Request) -> Response:
        body = await schemas.read_json(request, schemas.EXCHANGE_BODY, self.max_body)
        code, state = body["code"], body.get("state")
        carried = None if code.startswith(("http://", "https://")) else oauth.parse_pasted(code)[1]
        if carried and state and carried != state:
            raise RequestRejected(422, "state: does not match the state carried in code (CODE#STATE)")
        record = await self.service.complete_login(code, body.get("user_id"), state=state)
        return JSONResponse({"success": True, "expires_in": int(record.expires_at - time.time()),
                             "user_id": record.user_id, "account_email": record.account_email})

    async def status(self, request: Request) -> Response:
        query = schemas.read_query(request, schemas.STATUS_QUERY)
        uid = self.service.user(query.get("user_id"))
        record = await self.service.cached_record(uid)
        return JSONResponse(self.service.status_report(record, uid))

    async def token(self, request: Request) -> Response:
        """An access token for a sidecar (never the refresh token); the console keeps refreshing."""
        query = schemas.read_query(request, schemas.STATUS_QUERY)
        if self.master_key is None:
            return error(403, "the token endpoint hands out access tokens, so it needs a master key; "
                              "set LITELLM_MASTER_KEY and serve without --insecure-no-auth")
        uid = self.service.user(query.get("user_id"))
        wait = self.token_limit.take(uid)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            return error(429, f"too many token requests for user {uid!r}; retry in {seconds}s",
                         headers={"Retry-After": str(seconds)})
        record = await self.service.hand_out(uid, f"api:{self._client(request)}")
        return JSONResponse({"access_token": record.access_token, "expires_at": record.expires_at},
                            headers={"cache-control": "no-store"})

    async def refresh(self, request: Request) -> Response:
        body = await schemas.read_json(request, schemas.REFRESH_BODY, self.max_body)
        record = await self.service.refresh(body.get("user_id"), force=body.get("force", True))
        report = self.service.status_report(record, record.user_id)
        return JSONResponse({"success": True, "user_id": record.user_id, "status": report["status"],
                             "expires_in": report["expires_in"], "refresh_count": record.refresh_count})

    async def logout(self, request: Request) -> Response:
        body = await schemas.read_json(request, schemas.LOGOUT_BODY, self.max_body)
        uid = self.service.user(body.get("user_id"))
        removed = await self.service.logout(uid)
        return JSONResponse({"success": True, "user_id": uid, "logged_out": removed})

    async def users(self, request: Request) -> Response:
        schemas.read_query(request, schemas.NO_QUERY)
        records = sorted(await self.service.list_users(), key=lambda r: r.user_id)
        reports = [self.service.status_report(r, r.user_id) for r in records]
        return JSONResponse({"users": reports, "count": len(reports)})

    async def health(self, request: Request) -> Response:
        query = schemas.read_query(request, {"probe": schemas.Field(str, max_len=8)})
        probe = query.get("probe", "ready")
        if probe not in ("live", "ready"):
            raise RequestRejected(422, "probe: must be 'live' or 'ready'")
        if probe == "live":
            return JSONResponse({"status": "alive"})
        tiers = await self._tier_health()
        primary = self.service.store.primary.name
        primary_up = self.service.primary_up(tiers)
        any_down = any(t.state in ("down", "held") for t in tiers)
        trusted = self.master_key is None or key_matches(presented_key(request.scope["headers"]),
                                                         self.master_key)
        shown = [t.to_dict() if trusted else {"name": t.name, "state": t.state} for t in tiers]
        overall = "down" if not primary_up else ("degraded" if any_down else "ok")
        return JSONResponse({"status": overall, "primary": primary, "tiers": shown},
                            status_code=200 if primary_up else 503)

    async def metrics_page(self, request: Request) -> Response:
        schemas.read_query(request, schemas.NO_QUERY)
        body = await self.metrics.render(self.service, await self._tier_health())
        return Response(body, media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        schemas.read_query(request, schemas.NO_QUERY)
        return JSONResponse(self._openapi)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"no such endpoint: {request.url.path} (see /openapi.json)",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error(exc.status_code, message, headers=getattr(exc, "headers", None))


def create_api(service, settings: Settings, *, insecure_no_auth: bool = False, host: str = "127.0.0.1",
               login_burst: int = LOGIN_BURST, login_per_minute: float = LOGIN_PER_MINUTE,
               max_body: int = schemas.MAX_BODY_BYTES, health_ttl: float = HEALTH_TTL,
               on_start: Callable[[Any], Awaitable[Any]] | None = None) -> Starlette:
    """The ASGI app. ``service``: an ``AuthService`` the caller owns and closes, or ``None`` to
    have one made from ``settings`` in the lifespan and closed at shutdown.

    Without a master key in ``settings`` this raises ``UsageError`` unless ``insecure_no_auth``
    and ``host`` is a loopback address. ``on_start(service)`` may return an async callable that
    is awaited at shutdown (the background refresher uses it).
    """
    master_key = required_master_key(settings.master_key, host, insecure_no_auth)
    api = _Api(service, settings, master_key, login_burst=login_burst, login_per_minute=login_per_minute,
               max_body=max_body, health_ttl=health_ttl, on_start=on_start)
    routes = [
        Route("/auth/claude/oauth/start", _guarded(api.start), methods=["GET"]),
        Route("/auth/claude/oauth/exchange", _guarded(api.exchange), methods=["POST"]),
        Route("/auth/claude/oauth/status", _guarded(api.status), methods=["GET"]),
        Route("/auth/claude/oauth/refresh", _guarded(api.refresh), methods=["POST"]),
        Route("/auth/claude/oauth/token", _guarded(api.token), methods=["GET"]),
        Route("/auth/claude/oauth/logout", _guarded(api.logout), methods=["POST"]),
        Route("/auth/claude/users", _guarded(api.users), methods=["GET"]),
        Route("/health", _guarded(api.health), methods=["GET"]),
        Route("/metrics", _guarded(api.metrics_page), methods=["GET"]),
        Route("/openapi.json", _guarded(api.openapi), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=api.lifespan,
                    middleware=[Middleware(MasterKeyMiddleware, master_key=master_key)],
                    exception_handlers={HTTPException: _http_error})
    app.state.api = api
    return app
