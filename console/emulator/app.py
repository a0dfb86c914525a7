"""Starlette shell over `EmulatorState`, with the real hosts' paths.

One app serves what are three hosts in production (claude.ai authorize, the console/platform
token host, api.anthropic.com), so a client under test only swaps base URLs. Handlers stay
small and log nothing: benchmarks push thousands of requests a second through here.
"""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .state import (
    CLOUDFLARE_PAGE,
    OAUTH_BETA,
    OAUTH_NOT_SUPPORTED,
    ApiError,
    AuthorizeError,
    EmulatorState,
    OAuthError,
)

_NO_STORE = {"cache-control": "no-store"}


def _json(body: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _page(title: str, body_html: str, status: int = 200) -> Response:
    doc = (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)} - Claude OAuth EMULATOR</title></head><body>"
        "<p><strong>Claude OAuth EMULATOR</strong> - not Claude, not Anthropic.</p>"
        f"{body_html}</body></html>"
    )
    return Response(doc, status_code=status, media_type="text/html; charset=utf-8")


def _bearer(request: Request) -> Optional[str]:
    value = request.headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _read_params(request: Request) -> dict:
    """Token bodies are JSON in practice; form-encoded is accepted because one report says it works."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in ctype:
        try:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "Body is not valid UTF-8") from None
    if not raw:
        raise OAuthError("invalid_request", "Missing request body")
    try:
        data = json.loads(raw)
    except ValueError:
        raise OAuthError("invalid_request", "Request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise OAuthError("invalid_request", "Request body must be a JSON object")
    return data


async def _read_json(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("body must be JSON") from None
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _sse(message: dict):
    """The Messages streaming event sequence for one finished text reply."""

    def event(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    text = message["content"][0]["text"]
    start = dict(message, content=[], stop_reason=None, usage=dict(message["usage"], output_tokens=0))

    async def gen():
        yield event("message_start", {"type": "message_start", "message": start})
        yield event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
        yield event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": text}})
        yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": message["usage"]["output_tokens"]}})
        yield event("message_stop", {"type": "message_stop"})

    return StreamingResponse(gen(), media_type="text/event-stream")


def create_app(state: Optional[EmulatorState] = None) -> Starlette:
    """Build the emulator app around `state` (a fresh default one if not given)."""
    st = state if state is not None else EmulatorState()

    async def delay() -> None:
        ms = st.config.latency_ms
        if ms > 0:
            await asyncio.sleep(ms / 1000.0)

    def faulted(kind: str) -> Optional[Response]:
        hit = st.begin(kind)
        if hit is None:
            return None
        status, body, headers = hit
        return _json(body, status, headers)

    # ---------------------------------------------------------------- browser side

    async def authorize(request: Request) -> Response:
        await delay()
        try:
            result = st.authorize(request.query_params)
        except AuthorizeError as e:
            return _page(
                "Authorization error",
                f"<h1>Authorization failed</h1><p>{html.escape(e.error)}: "
                f"{html.escape(e.description)}</p>",
                400,
            )
        return Response(status_code=302, headers={"location": result["callback_url"], **_NO_STORE})

    async def callback_page(request: Request) -> Response:
        await delay()
        code = request.query_params.get("code")
        state = request.query_params.get("state", "")
        if not code:
            return _page("Authorization error", "<h1>No authorization code</h1>", 400)
        pasted = html.escape(f"{code}#{state}")
        return _page(
            "Authentication code",
            "<h1>Authentication code</h1><p>Paste this into your application:</p>"
            f"<pre><code id=\"code\">{pasted}</code></pre>",
        )

    # ---------------------------------------------------------------- token host

    def gatekeeper(request: Request) -> Optional[Response]:
        """What answers before the token endpoint: Cloudflare's 1010 page, or the moved host's 404."""
        if st.blocked_agent(request.headers.get("user-agent")):
            return Response(CLOUDFLARE_PAGE, status_code=403, media_type="text/html; charset=UTF-8")
        if st.config.token_moved:
            return _json({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}, 404)
        return None

    async def token(request: Request) -> Response:
        await delay()
        gate = gatekeeper(request)
        if gate is not None:
            return gate
        params: Optional[dict] = None
        error: Optional[OAuthError] = None
        try:
            params = await _read_params(request)
        except OAuthError as e:
            error = e
        grant = params.get("grant_type") if params else None
        kind = {"authorization_code": "exchange", "refresh_token": "refresh"}.get(grant, "token")
        hit = faulted(kind)
        if hit is not None:
            return hit
        try:
            if error is not None:
                raise error
            return _json(st.token(params), headers=_NO_STORE)
        except (OAuthError, ApiError) as e:
            return _json(e.body(), e.status)

    async def seed_refresh(request: Request) -> Response:
        """The seed's `/v1/oauth/refresh` style: beta header plus `{"refresh_token"}`."""
        await delay()
        gate = gatekeeper(request)
        if gate is not None:
            return gate
        hit = faulted("refresh")
        if hit is not None:
            return hit
        try:
            if "oauth" not in request.headers.get("anthropic-beta", ""):
                raise OAuthError("invalid_request", "anthropic-beta header with an oauth beta is required")
            params = await _read_params(request)
            result = st.refresh(
                params.get("refresh_token"),
                params.get("client_id"),
                params.get("scope"),
                require_client=False,
            )
            return _json(result, headers=_NO_STORE)
        except (OAuthError, ApiError) as e:
            return _json(e.body(), e.status)

    # ---------------------------------------------------------------- API host

    async def profile(request: Request) -> Response:
        await delay()
        hit = faulted("profile")
        if hit is not None:
            return hit
        try:
            return _json(st.profile(_bearer(request)))
        except ApiError as e:
            return _json(e.body(), e.status)

    def needs_beta(request: Request, token: Optional[str]) -> None:
        if token is None:
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        if OAUTH_BETA not in request.headers.get("anthropic-beta", ""):
            raise ApiError(401, "authentication_error", OAUTH_NOT_SUPPORTED)

    async def usage(request: Request) -> Response:
        await delay()
        hit = faulted("usage")
        if hit is not None:
            return hit
        try:
            token = _bearer(request)
            needs_beta(request, token)
            return _json(st.usage(token))
        except ApiError as e:
            return _json(e.body(), e.status)

    async def messages(request: Request) -> Response:
        await delay()
        hit = faulted("messages")
        if hit is not None:
            return hit
        try:
            token = _bearer(request)
            needs_beta(request, token)
            try:
                body = await _read_json(request)
            except ValueError as e:
                raise ApiError(400, "invalid_request_error", str(e)) from None
            message = st.message(token, body)
            if body.get("stream") is True:
                return _sse(message)
            return _json(message)
        except ApiError as e:
            return _json(e.body(), e.status)

    async def create_api_key(request: Request) -> Response:
        await delay()
        hit = faulted("create_api_key")
        if hit is not None:
            return hit
        try:
            return _json(st.create_api_key(_bearer(request)))
        except ApiError as e:
            return _json(e.body(), e.status)

    # ---------------------------------------------------------------- control API (no latency)

    def bad(message: str, status: int = 400) -> Response:
        return _json({"error": "invalid_request", "error_description": message}, status)

    async def control_body(request: Request) -> dict:
        return await _read_json(request)

    async def approve(request: Request) -> Response:
        try:
            body = await control_body(request) if request.method == "POST" else {}
        except ValueError as e:
            return bad(str(e))
        url = body.get("url") or request.query_params.get("url")
        email = body.get("email") or request.query_params.get("email")
        if not isinstance(url, str) or not url:
            return bad("url (the full authorize URL) is required")
        if email is not None and not isinstance(email, str):
            return bad("email must be a string")
        params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        try:
            result = st.authorize(params, email=email)
        except AuthorizeError as e:
            return _json({"error": e.error, "error_description": e.description}, 400)
        return _json(
            {k: result[k] for k in ("code", "state", "pasted", "callback_url")}
        )

    async def stats(request: Request) -> Response:
        return _json(st.stats())

    async def reset(request: Request) -> Response:
        st.reset()
        return _json({"ok": True, "config": st.get_config()})

    async def config(request: Request) -> Response:
        if request.method == "GET":
            return _json(st.get_config())
        try:
            return _json(st.configure(**await control_body(request)))
        except (ValueError, TypeError) as e:
            return bad(str(e))

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return _json({"faults": st.faults()})
        if request.method == "DELETE":
            return _json({"cleared": st.clear_faults()})
        try:
            body = await control_body(request)
            endpoint = body.get("endpoint", "any")
            status = body.get("status")
            return _json(
                st.add_fault(
                    endpoint,
                    status,
                    count=body.get("count", 1),
                    retry_after=body.get("retry_after"),
                    body=body.get("body"),
                )
            )
        except (ValueError, TypeError) as e:
            return bad(str(e))

    async def revoke(request: Request) -> Response:
        try:
            body = await control_body(request)
        except ValueError as e:
            return bad(str(e))
        keys = {k: body.get(k) for k in ("access_token", "refresh_token", "email")}
        if not any(isinstance(v, str) and v for v in keys.values()):
            return bad("give access_token, refresh_token or email")
        return _json({"revoked": st.revoke(**{k: v for k, v in keys.items() if isinstance(v, str)})})

    async def expire(request: Request) -> Response:
        try:
            body = await control_body(request)
        except ValueError as e:
            return bad(str(e))
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            return bad("access_token is required")
        if not st.expire(token):
            return _json({"error": "not_found", "error_description": "unknown access token"}, 404)
        return _json({"expired": True})

    async def org(request: Request) -> Response:
        """``{"email", "state": "disabled" | "not_allowed" | "active"}``: an organization's standing."""
        try:
            body = await control_body(request)
            email = body.get("email")
            if not isinstance(email, str) or not email:
                return bad("email is required")
            st.set_org_state(email, body.get("state"))
        except (ValueError, TypeError) as e:
            return bad(str(e))
        return _json({"email": email, "state": body.get("state")})

    async def health(request: Request) -> Response:
        return _json({"ok": True, "emulator": True, "note": "Claude OAuth emulator, not Claude"})

    routes = [
        Route("/oauth/authorize", authorize, methods=["GET"]),
        Route("/cai/oauth/authorize", authorize, methods=["GET"]),
        Route("/oauth/code/callback", callback_page, methods=["GET"]),
        Route("/v1/oauth/token", token, methods=["POST"]),
        Route("/v1/oauth/refresh", seed_refresh, methods=["POST"]),
        Route("/api/oauth/profile", profile, methods=["GET"]),
        Route("/api/oauth/usage", usage, methods=["GET"]),
        Route("/api/oauth/claude_cli/create_api_key", create_api_key, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/_emulator/approve", approve, methods=["GET", "POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/config", config, methods=["GET", "POST"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/revoke", revoke, methods=["POST"]),
        Route("/_emulator/expire", expire, methods=["POST"]),
        Route("/_emulator/org", org, methods=["POST"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = st
    return app
