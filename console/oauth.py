"""Talks to the provider, nothing else: PKCE, the authorize URL, code exchange, refresh.

httpx is imported on first use, so commands that need no HTTP (status, users) stay fast.
Only ``invalid_grant`` is terminal. 429 honours ``retry-after``; 429, 5xx and network
errors are retried with capped exponential backoff and jitter, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .config import ANTHROPIC_VERSION, Settings
from .errors import (AccountBlocked, InvalidGrant, LoginError, OAuthError, RateLimited,
                     TransientOAuthError)
from .refusals import BLOCKED, Answer, classify

log = logging.getLogger("console.oauth")

LONG_LIVED_SECONDS = 31536000  # one year, as `claude setup-token` asks
LONG_LIVED_SCOPE = "user:inference"
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


# -- PKCE and state ----------------------------------------------------------------------

def new_verifier(nbytes: int = 64) -> str:
    """A PKCE verifier from the CSPRNG: 64 bytes give 86 unreserved characters."""
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")


def challenge_for(verifier: str) -> str:
    """S256: base64url(sha256(verifier)) without padding (RFC 7636 4.2)."""
    if not 43 <= len(verifier) <= 128 or not set(verifier) <= _UNRESERVED:
        raise ValueError("a PKCE verifier is 43-128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_state() -> str:
    """16 random bytes (128 bits, as unguessable as CSRF protection needs), base64url: 22
    characters shown to the user, unrelated to the verifier. Short, so the QR code stays small."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def authorize_url(settings: Settings, *, state: str, challenge: str, redirect_uri: str | None = None) -> str:
    params = {
        "code": "true",
        "client_id": settings.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri or settings.redirect_uri,
        "scope": settings.scopes,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    # RFC 3986 3.4 allows ":" and "/" in a query as they are; leaving them unencoded in the
    # redirect URI and the scopes shortens the URL (and its QR code) and every parser reads
    # the same values.
    return f"{settings.authorize_url}?{urlencode(params, safe=':/')}"


MAX_PASTED = 8192  # far above a callback URL (~600 characters); a paste bigger than this is not one


def parse_pasted(text: str) -> tuple[str, str | None]:
    """``CODE#STATE``, the full callback URL, or a bare code -> (code, state or None)."""
    text = (text or "").strip().strip("'\"")
    if not text:
        raise LoginError("nothing was pasted", hint="paste the CODE#STATE string shown after login")
    if len(text) > MAX_PASTED or not text.isascii() or not text.isprintable():
        # Codes, states and callback URLs are short printable ASCII; anything else is a wrong paste.
        raise LoginError("the pasted text is not a code: it is too long or holds characters a code "
                         "never has", hint="paste the CODE#STATE string shown after login")
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        query = parse_qs(parts.query)
        query.update({k: v for k, v in parse_qs(parts.fragment).items() if k not in query})
        code = (query.get("code") or [""])[0]
        state = (query.get("state") or [None])[0]
        if not code:
            raise LoginError("the pasted URL has no code= parameter",
                             hint="paste the whole callback URL, or the CODE#STATE string")
        return code, state
    code, _, state = text.partition("#")
    if not code or any(c.isspace() for c in code):
        raise LoginError("the pasted text is not a code",
                         hint="paste the CODE#STATE string shown after login")
    return code, (state or None)


# -- responses ---------------------------------------------------------------------------

@dataclass
class TokenResponse:
    access_token: str
    refresh_token: str | None
    expires_at: float
    scopes: list[str] = field(default_factory=list)
    account_email: str | None = None
    account_uuid: str | None = None
    organization_uuid: str | None = None
    organization_name: str | None = None

    @classmethod
    def parse(cls, data: dict[str, Any], received_at: float) -> "TokenResponse":
        if not isinstance(data, dict) or not data.get("access_token"):
            raise OAuthError("the token endpoint answered without an access token",
                             hint="check claude_oauth.token_url")
        try:
            expires_in = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        account = data.get("account") or {}
        org = data.get("organization") or {}
        scope = data.get("scope") or ""
        return cls(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token") or None,
            expires_at=received_at + expires_in,
            scopes=scope.split() if isinstance(scope, str) else list(scope),
            account_email=account.get("email_address") or account.get("email"),
            account_uuid=account.get("uuid"),
            organization_uuid=org.get("uuid"),
            organization_name=org.get("name"),
        )


def _is_html(response) -> bool:
    ctype = response.headers.get("content-type", "")
    return "html" in ctype or (response.text or "").lstrip()[:1] == "<"


def answer_of(response, call: str) -> Answer:
    """The provider's answer as the refusal table reads it."""
    error, description = _error_of(response)
    html = _is_html(response)
    if html:
        error, description = None, "error code: 1010" if "1010" in (response.text or "") else ""
    return Answer(call, response.status_code, error, description, html)


def refusal_error(answer: Answer, *, what: str, url: str = "", agent: str = "", user: str = "U") -> OAuthError:
    """The exception for a refusal: its table row's line, exit code and class."""
    row = classify(answer)
    if row is None:
        return OAuthError(f"{what} rejected: {answer.said()}",
                          hint="check client_id, redirect_uri and token_url in the configuration",
                          status=answer.status, error=answer.error, description=answer.description)
    message, hint = row.line(answer, what=what, url=url, agent=agent, user=user)
    cls = InvalidGrant if answer.error == "invalid_grant" else \
        AccountBlocked if row.kind in BLOCKED else OAuthError
    return cls(message, hint=hint, status=answer.status, error=answer.error, kind=row.kind,
               exit_code=row.exit_code, description=answer.description)


def _error_of(response) -> tuple[str | None, str]:
    """(OAuth error code, human description) from any of the provider's error bodies."""
    try:
        body = response.json()
    except ValueError:
        return None, (response.text or "").strip()[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # {"type": "error", "error": {"type", "message"}}
            return err.get("type"), str(err.get("message", ""))
        if isinstance(err, str):
            return err, str(body.get("error_description", ""))
    return None, str(body)[:200]


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class OAuthClient:
    """One provider, one connection pool. Async; safe to share between coroutines."""

    def __init__(self, settings: Settings, http=None) -> None:
        self.settings = settings
        self._http = http
        self._own_http = http is None
        self.requests_sent = 0

    @property
    def http(self):
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                timeout=self.settings.http_timeout,
                headers={"user-agent": self.settings.user_agent},
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._own_http:
            await self._http.aclose()
            self._http = None

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        return min(s.backoff_cap, s.backoff_base * (2 ** attempt)) * (0.5 + random.random() / 2)

    async def _post(self, url: str, body: dict[str, Any], *, what: str, call: str,
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
        import httpx

        # The agent on every request, even over a client someone else built (the refresher's).
        headers = {"user-agent": self.settings.user_agent, **(headers or {})}
        attempt = 0
        while True:
            try:
                self.requests_sent += 1
                response = await self.http.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                failure = TransientOAuthError(
                    f"{what} failed: cannot reach {urlsplit(url).netloc} ({type(exc).__name__})",
                    hint="check the network and claude_oauth.token_url, then retry; stored tokens are unchanged")
                delay = self._backoff(attempt)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        return response.json()
                    except ValueError:
                        raise OAuthError(f"{what} failed: the provider answered {status} with no JSON",
                                         hint="check claude_oauth.token_url") from None
                error, description = _error_of(response)
                if status == 429:
                    wait = _retry_after(response)
                    if wait is not None and wait > self.settings.backoff_cap:
                        raise RateLimited(
                            f"{what} failed: rate limited by the provider (HTTP 429), which asks to wait "
                            f"{int(wait)}s", hint="retry after that; stored tokens are unchanged",
                            status=status, error=error)
                    failure = RateLimited(
                        f"{what} failed: rate limited by the provider (HTTP 429)",
                        hint="wait a minute and retry; stored tokens are unchanged", status=status, error=error)
                    delay = min(self.settings.backoff_cap, max(wait or 0.0, self._backoff(attempt)))
                elif status >= 500:
                    failure = TransientOAuthError(
                        f"{what} failed: the provider answered HTTP {status}",
                        hint="retry later; stored tokens are unchanged", status=status, error=error)
                    delay = self._backoff(attempt)
                else:
                    raise refusal_error(answer_of(response, call), what=what, url=url,
                                        agent=self.settings.user_agent)
            if attempt >= self.settings.max_retries:
                raise failure
            log.info("%s: %s; retrying in %.2fs", what, failure.message, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def exchange(self, code: str, *, state: str, verifier: str, redirect_uri: str,
                       long_lived: bool = False) -> TokenResponse:
        body = {
            "grant_type": "authorization_code",
            "code": code,
            "state": state,
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        if long_lived:  # what `claude setup-token` asks for: a year, inference only, no refresh token
            body["expires_in"] = LONG_LIVED_SECONDS
            body["scope"] = LONG_LIVED_SCOPE
        data = await self._post(self.settings.token_url, body, what="code exchange", call="exchange")
        return TokenResponse.parse(data, time.time())

    async def refresh(self, refresh_token: str, scopes: list[str] | None = None) -> TokenResponse:
        """``scopes`` (the stored ones) are sent only when ``claude_oauth.refresh_scope`` is on."""
        s = self.settings
        if s.refresh_style == "seed":
            body: dict[str, Any] = {"refresh_token": refresh_token}
            headers = {"anthropic-beta": s.beta_header}
        else:
            body = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                    "client_id": s.client_id}
            headers = None
        if s.refresh_scope and scopes:
            body["scope"] = " ".join(scopes)
        data = await self._post(s.effective_refresh_url, body, what="token refresh", call="refresh",
                                headers=headers)
        return TokenResponse.parse(data, time.time())

    def api_headers(self, access_token: str) -> dict[str, str]:
        """Bearer, version and beta list; never x-api-key."""
        return {"authorization": f"Bearer {access_token}", "anthropic-version": ANTHROPIC_VERSION,
                "anthropic-beta": self.settings.beta_header, "user-agent": self.settings.user_agent}

    async def api(self, method: str, path: str, access_token: str, **kwargs):
        """One call to the Claude API with the bearer token; the caller handles 401."""
        url = f"{self.settings.api_base_url.rstrip('/')}{path}"
        headers = {**self.api_headers(access_token), **kwargs.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kwargs)
