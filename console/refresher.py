"""The background refresher: refreshes tokens before anyone has to wait for it.

Each pass claims the users that are due (expiring within the window, or idle long enough
that their refresh token should be exercised) and refreshes them through ``AuthService``,
so its single flight, lock and compare-and-swap apply as for any caller. On PostgreSQL a
claim is a lease taken with ``FOR UPDATE SKIP LOCKED``: replicas running this at once split
the users between them. A failure backs that user off (doubling up to a cap, counted in the
database so every replica honours it); only ``invalid_grant`` is terminal, and it marks the
user as needing a login, which takes them out of the schedule.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConsoleError, NeedsLogin, NotLoggedIn, StaleWrite
from .store.postgres import default_owner

log = logging.getLogger("console.refresher")

DEFAULT_CONCURRENCY = 32
DEFAULT_INTERVAL = 60.0
DEFAULT_KEEPALIVE = 86400.0      # exercise a refresh token at least daily
DEFAULT_LEASE = 120.0            # a claim other replicas respect; a crashed runner's lapses
DEFAULT_BACKOFF_BASE = 60.0
DEFAULT_BACKOFF_CAP = 3600.0


@dataclass
class RefreshCounts:
    claimed: int = 0
    refreshed: int = 0
    skipped: int = 0             # changed since the claim: someone else refreshed or logged in
    failed: int = 0              # transient: backing off, tokens untouched
    needs_login: int = 0         # invalid_grant: only a new login helps

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.claimed} due: {self.refreshed} refreshed, {self.skipped} already fresh, "
                f"{self.failed} failed (backing off), {self.needs_login} need a login")


def provider_client(settings, concurrency: int):
    """An HTTP client for ``concurrency`` provider calls at once, as several small pools.

    httpcore's pool does bookkeeping over every connection on each request (quadratic in the
    pool's size): one pool of 32 connections spends more CPU on that than on the requests.
    Give it to ``OAuthClient(settings, http=...)``; the caller closes it.
    """
    import httpx

    class Shards(httpx.AsyncBaseTransport):
        def __init__(self, count: int, size: int) -> None:
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            tls = httpx.create_ssl_context()  # loading the CA bundle once, not once per pool
            self.pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(count)]
            self.turn = 0

        async def handle_async_request(self, request):
            self.turn += 1
            return await self.pools[self.turn % len(self.pools)].handle_async_request(request)

        async def aclose(self) -> None:
            for pool in self.pools:
                await pool.aclose()

    size = 4
    return httpx.AsyncClient(transport=Shards(max(1, -(-int(concurrency) // size)), size * 2),
                             timeout=settings.http_timeout, headers={"user-agent": settings.user_agent})


async def run_once(service, *, concurrency: int = DEFAULT_CONCURRENCY, window: float | None = None,
                   keepalive: float = DEFAULT_KEEPALIVE, lease: float = DEFAULT_LEASE,
                   backoff_base: float = DEFAULT_BACKOFF_BASE, backoff_cap: float = DEFAULT_BACKOFF_CAP,
                   interval: float = DEFAULT_INTERVAL, owner: str | None = None) -> RefreshCounts:
    """Refresh every user due now, ``concurrency`` at a time; return what happened.

    ``window`` defaults to the refresh buffer plus two intervals, so a token is refreshed
    here before request paths would have to.
    """
    concurrency = max(1, int(concurrency))
    if window is None:
        window = service.settings.refresh_buffer + 2 * interval
    owner = owner or default_owner()
    counts = RefreshCounts()
    seen: set[str] = set()
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()

    async def one(uid: str, version: int) -> None:
        try:
            result = await service.refresh_claimed(uid, version)
        except (NeedsLogin, NotLoggedIn) as exc:
            counts.needs_login += isinstance(exc, NeedsLogin)
            counts.skipped += isinstance(exc, NotLoggedIn)
            log.warning("background refresh of %s: %s", uid, exc.message)
        except StaleWrite:
            counts.skipped += 1
        except ConsoleError as exc:
            counts.failed += 1
            log.warning("background refresh of %s failed; backing off: %s", uid, exc.message)
        except Exception:  # noqa: BLE001 - one user's bug must not stop everyone else's refresh
            counts.failed += 1
            log.exception("background refresh of %s failed unexpectedly", uid)
        else:  # our compare-and-swap from the claimed version gives exactly the next one
            if result.version == version + 1 and result.last_refresh_error is None:
                counts.refreshed += 1
            else:
                counts.skipped += 1
        finally:
            slots.release()

    try:
        while True:
            claimed = await service.claim_due_refreshes(
                limit=concurrency * 4, window=window, keepalive=keepalive, lease=lease, owner=owner,
                backoff_base=backoff_base, backoff_cap=backoff_cap)
            fresh = [(uid, version) for uid, version in claimed if uid not in seen]
            if not fresh:
                break
            for uid, version in fresh:
                seen.add(uid)
                counts.claimed += 1
                await slots.acquire()
                task = asyncio.create_task(one(uid, version))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return counts


async def run_forever(service, interval: float = DEFAULT_INTERVAL, *, on_pass=None,
                      **options: Any) -> None:
    """``run_once`` every ``interval`` seconds until cancelled; a failed pass is logged, not fatal."""
    while True:
        try:
            counts = await run_once(service, interval=interval, **options)
            if on_pass is not None:
                on_pass(counts)
            elif counts.claimed:
                log.info("background refresh: %s", counts)
        except ConsoleError as exc:
            log.warning("background refresh pass failed: %s", exc)
        await asyncio.sleep(interval)


async def start(service, interval: float = DEFAULT_INTERVAL, **options: Any):
    """Run the refresher as a task beside a server or the TUI; returns an async ``stop()``.

    Unless told otherwise it refreshes at most half as many users at once as the process has
    database connections, leaving the rest to the requests it serves.
    """
    options.setdefault("concurrency", max(1, min(DEFAULT_CONCURRENCY,
                                                 service.settings.database_pool_size // 2)))
    task = asyncio.create_task(run_forever(service, interval, **options), name="claude-console-refresher")

    async def stop() -> None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    return stop
