"""Per-client token buckets, in memory: enough to stop one client from flooding login starts.

Each start stores a pending login, so an unbounded stream of them is a cheap way to fill
the store. A bucket holds ``burst`` starts and refills at ``per_minute``. Buckets live in
one process: with N replicas a client gets at most N times the rate, which still bounds it.
The table of clients is bounded too (least recently seen first out).
"""

from __future__ import annotations

import time
from typing import Callable


class TokenBuckets:
    def __init__(self, burst: int, per_minute: float, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("burst must be >= 1 and per_minute > 0")
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last update)

    def take(self, client: str) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_clients:  # dicts keep order: the oldest is first
            del self._buckets[next(iter(self._buckets))]
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
