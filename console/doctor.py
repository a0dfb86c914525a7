"""``doctor``: is this console able to work against Claude today? One check per line.

Configuration, each storage tier, the encryption key against stored rows, DNS/TCP/TLS to every
configured host, the token endpoint speaking OAuth (a deliberately invalid refresh: an OAuth
JSON error means it works, Cloudflare's HTML 403 or a 404 means it does not), the clock
against the server's Date header, and for one user a profile call. Nothing is changed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from .errors import ConsoleError
from .refusals import Answer, classify

MAX_SKEW = 60.0       # seconds the local clock may differ from the token host's Date header
KEY_SAMPLE = 20       # stored users decrypted to prove the key opens them
INVALID_REFRESH = "sk-ant-ort01-claude-console-doctor-deliberately-invalid"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.detail}" + (f"; {self.fix}" if self.fix and not self.ok else "")

    def to_dict(self) -> dict:
        return asdict(self)


def config_checks(settings) -> list[Check]:
    unknown = sorted(k for k in settings.extra if k.startswith("claude_oauth."))
    where = settings.config_path or "defaults and environment"
    out = [Check("configuration", not unknown,
                 f"{where}: every key known" if not unknown else f"{where}: unknown key(s) {', '.join(unknown)}",
                 "remove or correct them (the README's Configuration lists every key)")]
    for warning in settings.warnings():
        out.append(Check("configuration", False, warning, "point it at the current host"))
    return out


async def storage_checks(service) -> list[Check]:
    out = []
    for tier in await service.health():
        if tier.name == "key":
            continue
        if tier.state == "not configured":
            continue
        out.append(Check(f"storage {tier.name}", tier.state == "up", f"{tier.state}"
                         + (f" ({tier.detail})" if tier.detail else ""),
                         "see claude-console health; fix the tier's URL, path or server"))
    return out


async def key_check(service) -> Check:
    """Decrypt a sample of stored users: a wrong or missing key shows here, not at first use."""
    try:
        users = [r.user_id for r in await service.list_users()][:KEY_SAMPLE]
        for uid in users:
            await service.get_record(uid)
    except ConsoleError as exc:
        return Check("encryption key", False, str(exc), "set CLAUDE_TOKEN_ENCRYPTION_KEY to the key(s) the "
                                                          "rows were written with")
    keyring = getattr(service.store.primary, "keyring", None)
    what = f"key id {keyring.primary_id}" if keyring is not None and keyring.enabled else "no key (not encrypted)"
    return Check("encryption key", True, f"{what} opens {len(users)} stored user(s)" if users else
                 f"{what}; no stored users to try it on")


def _hosts(settings) -> list[tuple[str, str, int]]:
    seen, out = set(), []
    for url in (settings.authorize_url, settings.token_url, settings.effective_refresh_url, settings.api_base_url):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname or "", port)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


async def network_check(scheme: str, host: str, port: int, timeout: float) -> Check:
    name = f"network {host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return Check(name, False, f"DNS failed ({getattr(exc, 'strerror', None) or type(exc).__name__})",
                     "check DNS and the configured URL")
    address = infos[0][4][0]
    tls = ssl.create_default_context() if scheme == "https" else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None), timeout)
    except ssl.SSLError as exc:
        return Check(name, False, f"DNS {address}, TCP ok, TLS failed ({exc.reason or exc})",
                     "a proxy may intercept TLS: trust its CA, or check the system clock")
    except (OSError, asyncio.TimeoutError) as exc:
        return Check(name, False, f"DNS {address}, TCP failed ({getattr(exc, 'strerror', None) or 'timed out'})",
                     "check the firewall, proxy and the configured URL")
    version = writer.get_extra_info("ssl_object").version() if tls else None
    writer.close()
    return Check(name, True, f"DNS {address}, TCP" + (f", TLS ({version})" if version else " (no TLS: http)"))


async def token_endpoint_checks(service) -> list[Check]:
    """A deliberately invalid refresh: an OAuth JSON error means the endpoint works."""
    settings = service.settings
    url = settings.effective_refresh_url
    body = {"grant_type": "refresh_token", "refresh_token": INVALID_REFRESH, "client_id": settings.client_id}
    headers = {"user-agent": settings.user_agent}
    if settings.refresh_style == "seed":
        body, headers = {"refresh_token": INVALID_REFRESH}, {**headers, "anthropic-beta": settings.beta_header}
    from .oauth import answer_of

    try:
        sent = time.time()
        response = await service.oauth.http.post(url, json=body, headers=headers)
        received = time.time()
    except Exception as exc:  # httpx errors: the network check above usually says why
        return [Check("token endpoint", False, f"{url} did not answer ({type(exc).__name__})",
                      "see the network checks")]
    answer = answer_of(response, "refresh")
    row = classify(answer)
    if row is not None and row.kind in ("cloudflare", "moved"):
        line, hint = row.line(answer, what="a test refresh", url=url, agent=settings.user_agent)
        check = Check("token endpoint", False, line, hint)
    elif answer.error and not answer.html and 400 <= answer.status < 500:
        check = Check("token endpoint", True, f"{url} speaks OAuth (a test refresh got {answer.said()})")
    else:
        check = Check("token endpoint", False, f"{url} answered {answer.said()} to a test refresh, not an "
                      "OAuth error", "check claude_oauth.token_url")
    return [check, _clock_check(response.headers.get("date"), sent, received)]


def _clock_check(date: str | None, sent: float, received: float) -> Check:
    if not date:
        return Check("clock", False, "the token host sent no Date header to compare with",
                     "check the clock with NTP (timedatectl)")
    try:
        server = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("clock", False, f"the token host's Date header {date!r} is unreadable", "")
    skew = (sent + received) / 2 - server
    ok = abs(skew) <= MAX_SKEW
    return Check("clock", ok, f"{abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the token host",
                 "sync the clock (NTP): expiry times are judged by it")


async def profile_check(service, user_id: str) -> Check:
    name = f"profile of {user_id}"
    try:
        record = await service.get_record(user_id)
        if record is not None and record.long_lived:
            return Check(name, True, "skipped: a long-lived token lacks the user:profile scope")
        profile = await service.profile(user_id)
    except ConsoleError as exc:
        return Check(name, False, exc.message, exc.hint or "")
    account = profile.get("account") or {}
    org = profile.get("organization") or {}
    email = account.get("email") or account.get("email_address") or "unknown"
    kind = org.get("organization_type") or org.get("name") or "unknown organization"
    return Check(name, True, f"{email} ({kind})")


async def run_checks(service, user_id: str | None = None) -> list[Check]:
    settings = service.settings
    timeout = min(settings.http_timeout, 10.0)
    checks = config_checks(settings)
    checks += await storage_checks(service)
    checks.append(await key_check(service))
    checks += list(await asyncio.gather(*(network_check(s, h, p, timeout) for s, h, p in _hosts(settings))))
    checks += await token_endpoint_checks(service)
    if user_id is not None:
        checks.append(await profile_check(service, service.user(user_id)))
    return checks
