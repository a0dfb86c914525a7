"""Prometheus metrics for one API process, in a registry of its own.

A dedicated ``CollectorRegistry`` keeps two apps in one process (tests, embedding) from
colliding on the global one, and keeps Python's process collectors out unless asked.
Counters come from the service's audit hook, so refreshes done for any caller in this
process count, not only those asked for over HTTP. Gauges (users per status, tier health)
are read when scraped.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from ..errors import ConsoleError
from ..tokens import Status

CONTENT_TYPE = CONTENT_TYPE_LATEST
# A refresh is one HTTPS round trip to the provider: tens of ms to a few s, retries beyond.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.refreshes = Counter("claude_console_refreshes", "Token refreshes by result (ok, failed)",
                                 ["result"], registry=r)
        self.refresh_seconds = Histogram("claude_console_refresh_seconds",
                                         "Provider round trip of successful refreshes, seconds",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.logins = Counter("claude_console_logins", "Completed logins by result (ok, failed)",
                              ["result"], registry=r)
        self.logouts = Counter("claude_console_logouts", "Logouts that removed stored tokens", registry=r)
        self.login_starts_limited = Counter("claude_console_login_starts_rate_limited",
                                            "Login starts refused by the per-client rate limit", registry=r)
        self.users = Gauge("claude_console_users", "Stored users by token status", ["status"], registry=r)
        self.tier_up = Gauge("claude_console_tier_up", "1 when the storage tier answers, else 0",
                             ["tier"], registry=r)
        self.tier_primary = Gauge("claude_console_tier_primary", "1 for the tier writes go to",
                                  ["tier"], registry=r)
        self.held_locally = Gauge("claude_console_tokens_held_locally",
                                  "Users whose rotated token is held locally (rescue journal, memory), "
                                  "not yet stored", registry=r)
        for result in ("ok", "failed"):  # present from the first scrape, at 0
            self.refreshes.labels(result)
            self.logins.labels(result)

    def on_event(self, event, seconds: float | None) -> None:
        """The service's audit listener."""
        result = "ok" if event.ok else "failed"
        if event.action in ("refresh", "refresh_failed"):
            self.refreshes.labels(result).inc()
            if event.ok and seconds is not None:
                self.refresh_seconds.observe(seconds)
        elif event.action == "login":
            self.logins.labels(result).inc()
        elif event.action == "logout" and event.ok:
            self.logouts.inc()

    async def render(self, service, health) -> bytes:
        """Update the gauges from ``service`` and the given tier health, then expose."""
        try:
            records = await service.list_users()
        except ConsoleError:  # storage unreadable: keep the last counts; tier_up tells why
            records = None
        if records is not None:
            counts = dict.fromkeys((s.value for s in Status), 0)
            for record in records:
                counts[service.status_of(record).value] += 1
            for status, n in counts.items():
                self.users.labels(status).set(n)
        self.held_locally.set(len(service.held_users()))
        primary = service.store.primary.name
        for tier in health:
            if tier.state == "not configured":
                continue
            self.tier_up.labels(tier.name).set(1 if tier.state == "up" else 0)
            self.tier_primary.labels(tier.name).set(1 if tier.name == primary else 0)
        return generate_latest(self.registry)
