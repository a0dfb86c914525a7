"""Loopback login: Claude sends the browser back to ``http://localhost:N/callback``.

A one-shot listener on 127.0.0.1 takes ``code`` and ``state``, checks the state against the
login it belongs to, has the service finish the login, answers the browser with a plain page
and closes. For an operator whose browser is on the same machine, or behind
``ssh -L N:localhost:N``. A pasted code still works while it waits; the login's own limit
(``pending_ttl``, 10 minutes) holds. No HTTP framework: asyncio streams are enough.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from typing import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from .errors import ConsoleError, LoginError

log = logging.getLogger("console.loopback")

HOST = "127.0.0.1"
POLL = 1.0  # seconds between checks that the login was not finished elsewhere (callback, TUI)


def redirect_uri(port: int) -> str:
    return f"http://localhost:{port}/callback"


def _page(status: str, title: str, text: str) -> bytes:
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>").encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            "cache-control: no-store\r\nconnection: close\r\n\r\n").encode()
    return head + body


class LoopbackListener:
    """Bound at ``open()`` (port 0: a free one), so the redirect URI is known before the login
    starts; ``wait()`` returns once one request carried the expected state and finished."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.state: str | None = None
        self.finish: Callable[[str], Awaitable[str]] | None = None  # pasted text -> page text
        self._server: asyncio.AbstractServer | None = None
        self._done: asyncio.Future | None = None

    async def open(self) -> "LoopbackListener":
        try:
            self._server = await asyncio.start_server(self._serve, HOST, self.port)
        except OSError as exc:
            raise ConsoleError(f"cannot listen on {HOST}:{self.port} for the login's redirect: {exc.strerror}",
                               hint="pick another --port, or leave it out for a free one") from None
        self.port = self._server.sockets[0].getsockname()[1]
        self._done = asyncio.get_running_loop().create_future()
        return self

    @property
    def redirect_uri(self) -> str:
        return redirect_uri(self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def settle(self, result=None, error: BaseException | None = None) -> None:
        if self._done is not None and not self._done.done():
            if error is not None:
                self._done.set_exception(error)
            else:
                self._done.set_result(result)

    async def wait(self):
        assert self._done is not None, "open() first"
        return await self._done

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        outcome = None  # (result, error) to settle the wait with, once the browser has its page
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing in them matters here
            page, outcome = await self._answer(line.decode("latin-1"))
            writer.write(page)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            if outcome is not None:  # only once the browser has its page
                self.settle(*outcome)

    async def _answer(self, request_line: str) -> tuple[bytes, tuple | None]:
        """The page for one request, and what to settle the wait with once it is sent."""
        method, _, rest = request_line.partition(" ")
        target = rest.rsplit(" ", 1)[0]
        parts = urlsplit(target)
        if method != "GET" or parts.path != "/callback":
            return _page("404 Not Found", "Not found", "This listener only takes the login's /callback."), None
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self._done is None or self._done.done():
            return _page("410 Gone", "Login finished", "This login is already over. You can close this tab."), None
        if query.get("state") != self.state:
            # Not this login's answer (or a forged one): refuse it and keep waiting for the real one.
            return _page("400 Bad Request", "Wrong login",
                         "The state does not match the login that is waiting. Nothing was changed."), None
        if query.get("error"):
            why = query.get("error_description") or query["error"]
            refused = LoginError(f"Claude did not approve the login: {why}", hint="run the login again")
            return _page("400 Bad Request", "Login not approved",
                         f"Claude said: {why}. Nothing was changed."), (None, refused)
        code = query.get("code")
        if not code:
            return _page("400 Bad Request", "No code", "The redirect carried no code. Nothing was changed."), None
        try:
            text = await self.finish(f"{code}#{self.state}")
        except ConsoleError as exc:
            return _page("400 Bad Request", "Login failed", f"{exc}"), (None, exc)
        except Exception as exc:  # the operator's terminal gets the line; the browser a plain page
            log.exception("loopback login failed")
            return _page("500 Internal Server Error", "Login failed",
                         "See the terminal that started the login."), (None, exc)
        outcome = (text, None)
        return _page("200 OK", "Logged in", f"{text} You can close this tab."), outcome


async def login_by_loopback(service, user_id: str | None, listener: LoopbackListener, *,
                            long_lived: bool = False, on_start=None, pasted: "asyncio.Future | None" = None):
    """Start a login whose redirect is the listener, wait for the browser, a pasted code (the
    ``pasted`` future's text) or the login's expiry, whichever comes first; return the record,
    or None when the login was finished elsewhere (``claude-console callback``)."""
    start = await service.start_login(user_id, redirect_uri=listener.redirect_uri, long_lived=long_lived)
    listener.state = start.state
    records = []
    finishing = []  # non-empty while this process exchanges a code (the pending login is taken then)

    async def finish(text: str) -> str:
        finishing.append(text)
        try:
            record = await service.complete_login(text, start.user_id, state=start.state)
        finally:
            finishing.pop()
        records.append(record)
        return f"Logged in user {record.user_id} as {record.account_email or 'unknown account'}."

    listener.finish = finish
    if on_start is not None:
        on_start(start)

    async def watch_elsewhere() -> None:
        while True:
            await asyncio.sleep(POLL)
            if finishing or records:
                continue
            newest = await service.store.newest_pending(start.user_id)
            if not finishing and not records and (newest is None or newest.state != start.state):
                listener.settle(None)  # taken by a paste elsewhere, or replaced by a newer login
                return

    async def take_paste() -> None:
        text = await pasted
        if text:
            try:
                listener.settle(await finish(text))
            except BaseException as exc:
                listener.settle(error=exc)

    helpers = [asyncio.ensure_future(watch_elsewhere())]
    if pasted is not None:
        helpers.append(asyncio.ensure_future(take_paste()))
    try:
        left = start.expires_at - time.time()
        try:
            await asyncio.wait_for(asyncio.shield(listener.wait()), max(0.0, left))
        except asyncio.TimeoutError:
            ttl = service.settings.pending_ttl
            limit = f"{int(ttl // 60)} minutes" if ttl >= 60 else f"{int(ttl)} seconds"
            raise LoginError(f"the login for user {start.user_id!r} expired (logins must finish within "
                             f"{limit})", hint=f"run: claude-console login --user {start.user_id} "
                                                         "--loopback") from None
    finally:
        for task in helpers:
            task.cancel()
        await listener.close()
    return records[-1] if records else None
