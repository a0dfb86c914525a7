"""The Redis cache tier: ciphertext shared by every replica, invalidated on every write.

What sits in Redis is never a token in the clear. Each entry is ``<version>|<ciphertext>``
where the ciphertext is the whole record (tokens, account, counters) sealed with the
keyring's first key and the user id as associated data, so an entry copied onto another
user's key fails to decrypt. Without an encryption key the tier caches nothing (a
per-process key would make every replica's entries unreadable to the others) and only
carries invalidations.

An entry lives at most ``max_ttl`` seconds and never past the token's refresh point
(``expires_at - refresh_buffer``), so the cache can only ever hand out a token that the
service would also accept without refreshing. Writes (``put``/``delete``) replace the
entry and publish ``<origin>|<user id>`` on ``{prefix}invalidate`` in one server-side
script; every other process drops its memory entry for that user when the message
arrives. Fills after a read (``fill``) only create missing entries (``SET NX``), and
writes never replace a newer version, so a slow reader cannot put back a token that a
refresh or a logout has already replaced.

Redis down: every call raises ``TierUnavailable`` within the short socket timeouts, and
for ``retry_after`` seconds afterwards without trying again, so reads fall through to the
next tier at full speed and ``health`` reports it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import MISSING, fields
from typing import Any, Callable
from urllib.parse import urlsplit

from ..crypto import Keyring
from ..errors import CryptoError, TierUnavailable
from ..tokens import TokenRecord
from .base import DOWN, UP, Tier, TierHealth

log = logging.getLogger("console.store.cache")

Listener = Callable[["str | None"], None]

# KEYS[1] entry; ARGV: version, value, ttl ms, channel, message, force.
# Replace the entry unless it holds a newer version (or ``force``), then publish.
_WRITE = """
local cur = redis.call('GET', KEYS[1])
if ARGV[6] ~= '1' and cur then
  local v = tonumber(string.match(cur, '^(%d+)|'))
  if v and v > tonumber(ARGV[1]) then
    redis.call('PUBLISH', ARGV[4], ARGV[5])
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


_DEFAULTS = {f.name: ([] if f.default_factory is list else f.default) for f in fields(TokenRecord)
             if f.default is not MISSING or f.default_factory is list}


def _where(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'redis'}://{host}{port}{parts.path or ''}"


class RedisCacheTier(Tier):
    name = "redis"
    writable = False
    IS_CACHE = True

    def __init__(self, url: str, keyring: Keyring | None = None, *, prefix: str = "claude-console:",
                 refresh_buffer: float = 300.0, max_ttl: float = 60.0, timeout: float = 0.5,
                 retry_after: float = 2.0) -> None:
        self.url = url
        self.where = _where(url)
        self.keyring = keyring or Keyring([])
        self.prefix = prefix
        self.channel = f"{prefix}invalidate"
        self.refresh_buffer = refresh_buffer
        self.max_ttl = max_ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self.origin = os.urandom(8).hex()
        self._hole_ms = max(1000, int(max_ttl * 1000))  # holes and tombstones outlive slow readers
        self._client: Any = None
        self._write_script: Any = None
        self._errors: tuple = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_until = 0.0
        self._listeners: list[Listener] = []
        self._subscriber: asyncio.Task | None = None
        self._subscribed: asyncio.Event | None = None
        self._tried: asyncio.Event | None = None

    @property
    def caching(self) -> bool:
        """False without an encryption key: then only invalidations pass through Redis."""
        return self.keyring.enabled

    def key(self, user_id: str) -> str:
        return f"{self.prefix}token:{user_id}"

    # -- connection --------------------------------------------------------------------

    def _redis(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (sync wrappers)
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._drop_loop_state()
            self._client = aioredis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 1))  # one quick retry replaces a dead pooled socket
            self._write_script = self._client.register_script(_WRITE)
            from redis.exceptions import RedisError

            self._errors = (RedisError, OSError, asyncio.TimeoutError)
            self._subscribed, self._tried = asyncio.Event(), asyncio.Event()
            self._loop = loop
        return self._client

    def _drop_loop_state(self) -> None:
        if self._subscriber is not None and not self._subscriber.done():
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._subscriber.cancel()
        self._subscriber = None
        self._client = self._write_script = None

    def _down(self, exc: BaseException) -> TierUnavailable:
        self._down_until = time.monotonic() + self.retry_after
        detail = (str(exc) or type(exc).__name__).split(". ")[0].rstrip(".")  # redis-py repeats itself
        return TierUnavailable(f"redis at {self.where} is unreachable ({detail})",
                               hint="reads go to the next tier until it is back")

    async def _call(self, make):
        """Run one Redis command; any Redis or socket failure becomes ``TierUnavailable``."""
        if self._down_until > time.monotonic():
            raise TierUnavailable(f"redis at {self.where} is down",
                                  hint="reads go to the next tier until it is back")
        client = self._redis()
        if self._listeners and not self._tried.is_set():
            await self._start_subscriber()
        try:
            return await make(client)
        except self._errors as exc:
            raise self._down(exc) from None

    # -- reads -------------------------------------------------------------------------

    async def get(self, user_id: str) -> TokenRecord | None:
        if not self.caching:
            if self._listeners:  # nothing to read, but invalidations must still arrive
                self._redis()
                if not self._tried.is_set():
                    await self._start_subscriber()
            return None
        raw = await self._call(lambda r: r.get(self.key(user_id)))
        if not raw:
            return None
        _, _, sealed = raw.partition(b"|")
        if not sealed:
            return None  # a hole or a tombstone: ask the next tier
        try:
            data = json.loads(self.keyring.decrypt(sealed.decode(), user_id))
        except (CryptoError, ValueError) as exc:  # e.g. written under a key this replica lacks
            log.debug("cache entry for %s not usable: %s", user_id, exc)
            return None
        try:
            record = TokenRecord(**data)  # we wrote it: skip from_dict's field filtering (hot path)
        except TypeError:  # written by a replica whose record has other fields
            record = TokenRecord.from_dict(data)
        if record.needs_login or record.expires_at - self.refresh_buffer <= time.time():
            return None
        record.source = self.name
        return record

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        return []  # listings come from the backends

    # -- writes ------------------------------------------------------------------------

    def _ttl_ms(self, record: TokenRecord) -> int:
        """Milliseconds the record may be cached: 0 when it must not be."""
        if record.needs_login or not self.caching:
            return 0
        left = min(self.max_ttl, record.expires_at - self.refresh_buffer - time.time())
        return int(left * 1000) if left >= 0.1 else 0

    def _seal(self, record: TokenRecord) -> str:
        # Only fields that differ from their defaults: a smaller entry decodes faster.
        data = {k: v for k, v in record.to_dict().items() if k != "source" and _DEFAULTS.get(k, k) != v}
        return self.keyring.encrypt(json.dumps(data, separators=(",", ":")), record.user_id)

    def _write_call(self, user_id: str, version: int, value: str, ttl_ms: int, force: bool) -> dict:
        """The write script's keys and arguments: the entry, and the message every replica hears."""
        return {"keys": [self.key(user_id)],
                "args": [version, value, ttl_ms, self.channel, f"{self.origin}|{user_id}", "1" if force else "0"]}

    async def _write(self, call: dict) -> None:
        await self._call(lambda r: self._write_script(**call))

    async def put(self, record: TokenRecord, expected_version: int | None = None) -> TokenRecord:
        """After a write to the primary: replace the entry (unless newer) and tell every replica."""
        ttl = self._ttl_ms(record)
        if ttl:
            value = f"{record.version}|{self._seal(record)}"
        else:  # a hole: keeps slow readers from filling an older version back in
            value, ttl = f"{record.version}|", self._hole_ms
        await self._write(self._write_call(record.user_id, record.version, value, ttl, force=False))
        return record

    async def fill(self, record: TokenRecord) -> None:
        """After a read from the primary: cache it only if nothing (not even a hole) is there."""
        ttl = self._ttl_ms(record)
        if ttl:
            value = f"{record.version}|{self._seal(record)}"
            await self._call(lambda r: r.set(self.key(record.user_id), value, px=ttl, nx=True))

    def _tombstone(self, user_id: str) -> dict:
        return self._write_call(user_id, 0, "0|", self._hole_ms, force=True)

    async def delete(self, user_id: str) -> bool:
        """After a delete in the primary: a tombstone (no slow reader revives it), then tell everyone."""
        await self._write(self._tombstone(user_id))
        return True

    async def delete_many(self, user_ids: list[str], chunk: int = 1000) -> None:
        """``delete`` for many users (after a restore or a key rotation): the same tombstones
        and messages, pipelined, one round trip per ``chunk`` users."""
        for start in range(0, len(user_ids), chunk):
            part = user_ids[start:start + chunk]

            async def run(r, part=part):
                pipe = r.pipeline(transaction=False)
                for uid in part:
                    await self._write_script(**self._tombstone(uid), client=pipe)
                return await pipe.execute()

            await self._call(run)

    async def invalidate(self, user_id: str) -> None:
        """Drop one user's entry everywhere (e.g. after a change made outside this process)."""
        await self.delete(user_id)

    # -- invalidation listeners --------------------------------------------------------

    def listen(self, callback: Listener) -> None:
        """Call ``callback(user_id)`` when another process changes a user; ``None``: anyone."""
        if callback not in self._listeners:
            self._listeners.append(callback)

    def _notify(self, user_id: str | None) -> None:
        for callback in list(self._listeners):
            try:
                callback(user_id)
            except Exception:  # a listener bug must not stop invalidations
                log.exception("cache invalidation listener failed")

    async def _start_subscriber(self) -> None:
        """Start listening (once per event loop); until the first attempt ends, callers wait
        for it, so nothing is served into a memory cache that could miss an invalidation."""
        if not self._listeners:
            return
        if self._subscriber is None:
            self._subscriber = asyncio.ensure_future(self._subscribe_forever())
        if not self._tried.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._tried.wait(), self.timeout * 3)

    @property
    def subscribed(self) -> bool:
        return self._subscribed is not None and self._subscribed.is_set()

    async def _subscribe_forever(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pause = 0.1
        while True:
            client = aioredis.from_url(self.url, socket_connect_timeout=self.timeout,
                                       socket_timeout=self.timeout, retry=Retry(NoBackoff(), 0),
                                       health_check_interval=10)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                self._tried.set()
                self._notify(None)  # anything may have changed while we were not listening
                pause = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10.0)
                    if message is not None and message.get("type") == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: entries may be stale from now on
                if self._subscribed.is_set():
                    log.warning("redis invalidation channel lost (%s); memory caches dropped", exc)
                    self._notify(None)
                self._subscribed.clear()
                self._tried.set()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _on_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        origin, _, user_id = text.partition("|")
        if origin != self.origin:
            self._notify(user_id or None)

    # -- health and shutdown -----------------------------------------------------------

    async def health(self) -> TierHealth:
        try:
            client = self._redis()
            await client.ping()
        except Exception as exc:  # redis raises its own ConnectionError family
            return TierHealth(self.name, DOWN, str(self._down(exc)))
        self._down_until = 0.0
        if not self.caching:
            detail = (f"{self.where}: no encryption key, so no tokens are cached "
                      "(invalidations only; set CLAUDE_TOKEN_ENCRYPTION_KEY to cache)")
        else:
            detail = f"{self.where} prefix {self.prefix!r}, ciphertext, ttl <= {self.max_ttl:g}s"
        if self._subscriber is not None:
            detail += ", invalidations " + ("subscribed" if self.subscribed else "reconnecting")
        return TierHealth(self.name, UP, detail)

    async def close(self) -> None:
        task, self._subscriber = self._subscriber, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._loop = None
