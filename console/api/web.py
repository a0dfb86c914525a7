"""``claude-console web``: the TUI in a browser (textual-serve), behind the master key.

textual-serve has no authentication of its own, and anyone who reaches it drives a console
that can log users in and out. So the same rule as the API holds: no master key, no start
(except on loopback with ``--insecure-no-auth``). In front of textual-serve's own routes sits
an aiohttp middleware in the same process: a browser signs in once on ``/login`` with the
master key and gets an HttpOnly, SameSite=Strict session cookie (random, kept in memory,
12 hours); scripts may send ``Authorization: Bearer <master key>`` instead. The websocket
that drives the TUI also checks that its Origin is this server, against cross-site use.
"""

from __future__ import annotations

import html
import secrets
import sys
import time
from urllib.parse import urlsplit

from ..tokens import format_span
from .auth import key_matches, required_master_key
from .ratelimit import TokenBuckets

COOKIE = "cc_web_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>claude-console: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0;box-sizing:border-box}}.err{{color:#b00020}}</style>
</head><body><h1>claude-console</h1>
<p>Sign in with the server's master key (<code>LITELLM_MASTER_KEY</code>).</p>{message}
<form method="post" action="/login"><label for="key">Master key</label>
<input id="key" name="key" type="password" autocomplete="current-password" autofocus required>
<input type="submit" value="Sign in"></form></body></html>
"""


class WebGate:
    """Sessions and the checks in front of textual-serve's routes."""

    def __init__(self, master_key: str | None, *, secure_cookie: bool = False,
                 login_burst: int = 5, login_per_minute: float = 5.0) -> None:
        self.master_key = master_key
        self.secure_cookie = secure_cookie
        self.sessions: dict[str, float] = {}
        self.login_limit = TokenBuckets(login_burst, login_per_minute)

    def new_session(self) -> str:
        now = time.time()
        for token, until in list(self.sessions.items()):
            if until <= now:
                del self.sessions[token]
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]
        token = secrets.token_urlsafe(32)
        self.sessions[token] = now + SESSION_SECONDS
        return token

    def signed_in(self, request) -> bool:
        if self.master_key is None:
            return True
        token = request.cookies.get(COOKIE)
        if token:
            until = self.sessions.get(token)
            if until is not None and until > time.time():
                return True
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        return scheme.lower() == "bearer" and key_matches(credential.strip().encode(), self.master_key)

    @staticmethod
    def same_origin(request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser cross-site request: browsers always send Origin on websockets
        return urlsplit(origin).netloc.lower() == request.host.lower()

    # -- aiohttp pieces ------------------------------------------------------------------

    def middleware(self):
        from aiohttp import web

        @web.middleware
        async def gate(request, handler):
            if request.path == "/login":
                response = await handler(request)
            elif not self.signed_in(request):
                if request.method == "GET" and request.path == "/":
                    return web.Response(status=303, headers={"Location": "/login"})
                return web.Response(status=401, text="sign in at /login first\n",
                                    headers={"WWW-Authenticate": 'Bearer realm="claude-console"'})
            elif request.path == "/ws" and not self.same_origin(request):
                return web.Response(status=403, text="cross-origin websocket refused\n")
            else:
                response = await handler(request)
            if not response.prepared:
                for name, value in _PAGE_HEADERS.items():
                    response.headers.setdefault(name, value)
            return response

        return gate

    def _page(self, message: str = "", status: int = 200):
        from aiohttp import web

        note = f'<p class="err">{html.escape(message)}</p>' if message else ""
        return web.Response(status=status, text=LOGIN_PAGE.format(message=note), content_type="text/html",
                            headers={"Content-Security-Policy": _LOGIN_CSP})

    async def login_form(self, request):
        return self._page()

    async def login_submit(self, request):
        from aiohttp import web

        client = request.remote or "unknown"
        wait = self.login_limit.take(client)
        if wait > 0:
            response = self._page(f"Too many attempts; try again in {format_span(int(wait) + 1)}.", 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        form = await request.post()
        key = str(form.get("key", ""))
        if self.master_key is not None and not key_matches(key.encode(), self.master_key):
            return self._page("That is not the master key.", 401)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, self.new_session(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="Strict", secure=self.secure_cookie, path="/")
        return response

    async def logout(self, request):
        from aiohttp import web

        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(COOKIE, path="/")
        return response


def make_server(command: str, gate: WebGate, *, host: str, port: int, public_url: str | None = None):
    """A textual-serve ``Server`` whose aiohttp app has ``gate`` in front of every route."""
    from textual_serve.server import Server

    class GatedServer(Server):
        def initialize_logging(self) -> None:
            """textual-serve logs each request line at INFO; never with its query string."""
            import logging

            from ..logs import AccessLineFilter

            super().initialize_logging()
            logger = logging.getLogger("aiohttp.access")
            if not any(isinstance(f, AccessLineFilter) for f in logger.filters):
                logger.addFilter(AccessLineFilter(drop_query=True))

        async def _make_app(self):
            app = await super()._make_app()
            app.middlewares.append(gate.middleware())
            app.router.add_get("/login", gate.login_form)
            app.router.add_post("/login", gate.login_submit)
            app.router.add_post("/logout", gate.logout)
            return app

    return GatedServer(command, host=host, port=port, title="claude-console", public_url=public_url)


def run_web(settings, *, host: str = "127.0.0.1", port: int = 8000, public_url: str | None = None,
            insecure_no_auth: bool = False, config: str | None = None) -> int:
    key = required_master_key(settings.master_key, host, insecure_no_auth, what="the web console")
    command = f"{sys.executable} -m console" + (f" --config {_quote(config)}" if config else "")
    url = public_url or f"http://{host}:{port}"
    gate = WebGate(key, secure_cookie=url.startswith("https://"))
    server = make_server(command, gate, host=host, port=port, public_url=public_url)
    auth = "sign in with the master key" if key else "NO AUTHENTICATION (--insecure-no-auth)"
    print(f"claude-console web console on {url} ({auth})", file=sys.stderr, flush=True)
    server.serve()
    return 0


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
