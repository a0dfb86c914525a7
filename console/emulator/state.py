"""In-memory provider state of the Claude OAuth emulator.

No web imports: the Starlette app is a thin shell over this, and in-process tests (or a
benchmark thread) can drive and inspect the same object directly. Every public method takes
one lock, so reading counters or queueing faults from another thread is safe.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import re
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlencode, urlsplit

DEFAULT_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
DEFAULT_EMAIL = "sandbox-user@example.com"
DEFAULT_SCOPES = ("org:create_api_key", "user:profile", "user:inference")
DEFAULT_ACCESS_TTL = 28800
DEFAULT_CODE_TTL = 600

ACCESS_PREFIX = "sk-ant-oat01-"
REFRESH_PREFIX = "sk-ant-ort01-"
API_KEY_PREFIX = "sk-ant-api03-"

OAUTH_BETA = "oauth-2025-04-20"
REFRESH_INVALID = "Refresh token not found or invalid"
OAUTH_NOT_SUPPORTED = "OAuth authentication is currently not supported."
TOKEN_EXPIRED = "OAuth token has expired. Please obtain a new token or refresh your existing token."
# The 2026 refusals, word for word (../shared/claude-oauth-protocol.md, "What changed in 2026").
BAD_CODE = "Invalid 'code' in request."
BAD_REDIRECT = "Invalid 'redirect_uri' in request"
ORG_DISABLED = "This organization has been disabled."
OAUTH_NOT_ALLOWED = "OAuth authentication is currently not allowed for this organization."
CLAUDE_CODE_ONLY = ("This credential is only authorized for use with Claude Code and cannot be used for "
                    "other API requests.")
CLOUDFLARE_PAGE = ("<!DOCTYPE html><html><head><title>Access denied | platform.claude.com used Cloudflare to "
                   "restrict access</title></head><body><h1>Access denied</h1><p>error code: 1010</p>"
                   "<p>The owner of this website has banned your access based on your browser's signature."
                   "</p></body></html>")
LONG_LIVED_TTL = 31536000  # `claude setup-token`: a year, scope user:inference, no refresh token
ORG_STATES = ("active", "disabled", "not_allowed")

# Fault targets -> request kinds they hit. Kinds: "exchange" and "refresh" (token grants,
# refresh includes the seed-style endpoint), "token" (token endpoint, grant unknown or body
# unreadable), and one per API endpoint.
_API_KINDS = ("profile", "usage", "messages", "create_api_key")
FAULT_TARGETS: dict[str, frozenset[str]] = {
    "any": frozenset(("exchange", "refresh", "token") + _API_KINDS),
    "token": frozenset(("exchange", "refresh", "token")),
    "refresh": frozenset(("refresh",)),
    "exchange": frozenset(("exchange",)),
    **{k: frozenset((k,)) for k in _API_KINDS},
}

_COUNTED_KINDS = {
    "exchange": "exchange_requests",
    "refresh": "refresh_requests",
    "token": "token_other_requests",
    "profile": "profile_requests",
    "usage": "usage_requests",
    "messages": "messages_requests",
    "create_api_key": "create_api_key_requests",
}

_COUNTER_NAMES = (
    "authorize_requests",
    "authorize_ok",
    "exchange_requests",
    "exchange_ok",
    "refresh_requests",
    "refresh_ok",
    "refresh_replays",
    "family_revocations",
    "token_other_requests",
    "profile_requests",
    "usage_requests",
    "messages_requests",
    "create_api_key_requests",
    "faults_served",
)

_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}\Z")
# Fixed namespace so an email maps to the same account uuid across runs and resets.
_ACCOUNT_NS = uuid.UUID("6f1d3c1e-7a52-4c1b-9a55-0e6d2b8a4c11")


def s256(verifier: str) -> str:
    """PKCE S256 challenge of a verifier (RFC 7636 4.2): base64url(sha256), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class AuthorizeError(Exception):
    """An authorization request the provider refuses to redirect (shown as an error page)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class OAuthError(Exception):
    """Token endpoint failure in RFC 6749 5.2 shape, as the real token host answers."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


class ApiError(Exception):
    """API-host failure in Anthropic's `{"type": "error", ...}` shape."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message

    def body(self) -> dict:
        return error_body(self.type, self.message)


def error_body(type_: str, message: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}}


def default_fault_body(status: int) -> dict:
    """What the real hosts send for a status when the test does not say otherwise."""
    if status == 429:
        return error_body("rate_limit_error", "Rate limited. Please try again later.")
    if status == 401:
        return error_body("authentication_error", "Invalid bearer token")
    if status == 403:
        return error_body("permission_error", "Permission denied")
    if status == 404:
        return error_body("not_found_error", "Not found")
    if status == 529:
        return error_body("overloaded_error", "Overloaded")
    if 400 <= status < 500:
        return error_body("invalid_request_error", "Invalid request")
    return error_body("api_error", "Internal server error")


@dataclass
class EmulatorConfig:
    client_id: str = DEFAULT_CLIENT_ID
    access_ttl: int = DEFAULT_ACCESS_TTL
    latency_ms: float = 0.0
    family_revocation: bool = True
    omit_refresh_token: bool = False
    code_ttl: int = DEFAULT_CODE_TTL
    default_email: str = DEFAULT_EMAIL
    # Cloudflare in front of the token host: agents containing one of these get an HTML 403 (1010).
    blocked_user_agents: list = field(default_factory=list)
    # The token endpoint answers 404 not_found_error, as the old console.anthropic.com host does.
    token_moved: bool = False
    # "email_address" (older answers) or "email" (2026) in the profile's account.
    profile_shape: str = "email_address"
    # The API refuses OAuth tokens for anything but Claude Code (400, the terms).
    claude_code_only: bool = False


_CONFIG_TYPES: dict[str, tuple] = {
    "client_id": (str,),
    "access_ttl": (int,),
    "latency_ms": (int, float),
    "family_revocation": (bool,),
    "omit_refresh_token": (bool,),
    "code_ttl": (int,),
    "default_email": (str,),
    "blocked_user_agents": (list,),
    "token_moved": (bool,),
    "profile_shape": (str,),
    "claude_code_only": (bool,),
}


@dataclass
class Account:
    uuid: str
    email: str
    display_name: str
    org_uuid: str
    org_name: str


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: tuple
    state: str
    email: str
    expires_at: float
    used: bool = False


@dataclass(slots=True)
class _Family:
    """All tokens descending from one authorization code (RFC 9700 4.14.2 revokes these together)."""

    email: str
    client_id: str
    scopes: tuple
    current_refresh: Optional[str] = None
    access_tokens: list = field(default_factory=list)


@dataclass(slots=True)
class _Access:
    email: str
    scopes: tuple
    expires_at: float
    family: _Family
    revoked: bool = False


@dataclass(slots=True)
class _Refresh:
    family: _Family
    status: str = "active"  # active | rotated | revoked


@dataclass(slots=True)
class Fault:
    endpoint: str
    status: int
    remaining: int
    retry_after: Optional[float] = None
    body: Any = None

    def as_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "status": self.status,
            "count": self.remaining,
            "retry_after": self.retry_after,
            "body": self.body,
        }


def _str(params: Mapping[str, Any], key: str) -> Optional[str]:
    value = params.get(key)
    return value if isinstance(value, str) and value != "" else None


class EmulatorState:
    """Codes, tokens, accounts, faults and counters of one emulated provider."""

    def __init__(self, *, clock: Callable[[], float] = time.time, **config: Any) -> None:
        # The clock is injectable so tests can age codes and tokens without sleeping.
        self.clock = clock
        self._lock = threading.RLock()
        self._base_config = EmulatorConfig()
        self._apply_config(self._base_config, config)
        self.reset()

    # ------------------------------------------------------------------ admin

    def reset(self) -> None:
        """Forget everything; config returns to what the constructor was given."""
        with self._lock:
            self.config = EmulatorConfig(**asdict(self._base_config))
            self._accounts: dict[str, Account] = {}
            self._codes: dict[str, _Code] = {}
            self._access: dict[str, _Access] = {}
            self._refresh: dict[str, _Refresh] = {}
            self._families: list[_Family] = []
            self._faults: list[Fault] = []
            self._org_states: dict[str, str] = {}  # email -> "disabled" | "not_allowed"
            self._active_refresh = 0
            self.counters: dict[str, int] = dict.fromkeys(_COUNTER_NAMES, 0)

    @staticmethod
    def _apply_config(target: EmulatorConfig, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            types = _CONFIG_TYPES.get(key)
            if types is None:
                raise ValueError(f"unknown config key: {key}")
            if isinstance(value, bool) and bool not in types:
                raise ValueError(f"{key} must be {types[0].__name__}")
            if not isinstance(value, types):
                raise ValueError(f"{key} must be {types[0].__name__}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{key} must be >= 0")
            if isinstance(value, str) and not value:
                raise ValueError(f"{key} must not be empty")
            if isinstance(value, list) and not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{key} must be a list of non-empty strings")
            if key == "profile_shape" and value not in ("email", "email_address"):
                raise ValueError("profile_shape must be 'email' or 'email_address'")
        for key, value in changes.items():
            setattr(target, key, float(value) if key == "latency_ms" else value)

    def configure(self, **changes: Any) -> dict:
        """Change live behaviour; unknown keys or wrong types raise ValueError, nothing applied."""
        with self._lock:
            self._apply_config(self.config, changes)
            return asdict(self.config)

    def get_config(self) -> dict:
        with self._lock:
            return asdict(self.config)

    def stats(self) -> dict:
        with self._lock:
            out = dict(self.counters)
            out["active_refresh_tokens"] = self._active_refresh
            out["pending_faults"] = sum(f.remaining for f in self._faults)
            return out

    def add_fault(
        self,
        endpoint: str,
        status: int,
        count: int = 1,
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> dict:
        """Queue an answer that replaces the next `count` matching requests."""
        if endpoint not in FAULT_TARGETS:
            raise ValueError(f"unknown fault endpoint {endpoint!r}; use one of {sorted(FAULT_TARGETS)}")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)) or retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative number")
        fault = Fault(endpoint, status, count, retry_after, body)
        with self._lock:
            self._faults.append(fault)
        return fault.as_dict()

    def clear_faults(self) -> int:
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
            return n

    def faults(self) -> list:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def begin(self, kind: str) -> Optional[tuple[int, Any, dict]]:
        """Count one request of `kind`; hand back (status, body, headers) if a fault replaces it.

        Counting happens before the fault so faulted attempts show in the request counters.
        """
        with self._lock:
            name = _COUNTED_KINDS.get(kind)
            if name:
                self.counters[name] += 1
            if not self._faults:
                return None
            for i, fault in enumerate(self._faults):
                if kind in FAULT_TARGETS[fault.endpoint]:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[i]
                    self.counters["faults_served"] += 1
                    headers = {}
                    if fault.retry_after is not None:
                        ra = fault.retry_after
                        headers["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                    body = fault.body if fault.body is not None else default_fault_body(fault.status)
                    return fault.status, body, headers
            return None

    def revoke(
        self,
        access_token: Optional[str] = None,
        refresh_token: Optional[str] = None,
        email: Optional[str] = None,
    ) -> int:
        """Server-side revocation; returns how many tokens died."""
        n = 0
        with self._lock:
            if access_token:
                a = self._access.get(access_token)
                if a is not None and not a.revoked:
                    a.revoked = True
                    n += 1
            if refresh_token:
                r = self._refresh.get(refresh_token)
                if r is not None and r.status != "revoked":
                    n += self._kill_refresh(refresh_token, r)
            if email:
                for fam in self._families:
                    if fam.email == email:
                        n += self._revoke_family(fam)
        return n

    def expire(self, access_token: str) -> bool:
        """Make an access token expired now (its refresh token keeps working)."""
        with self._lock:
            a = self._access.get(access_token)
            if a is None:
                return False
            a.expires_at = min(a.expires_at, self.clock() - 1)
            return True

    def set_org_state(self, email: str, org_state: str) -> None:
        """Disable an account's organization, or refuse OAuth for it ("active" undoes it)."""
        if org_state not in ORG_STATES:
            raise ValueError(f"state must be one of {ORG_STATES}")
        with self._lock:
            if org_state == "active":
                self._org_states.pop(email, None)
            else:
                self._org_states[email] = org_state

    def blocked_agent(self, user_agent: Optional[str]) -> bool:
        """Cloudflare's verdict on a token call's User-Agent."""
        agent = (user_agent or "").lower()
        return any(b.lower() in agent for b in self.config.blocked_user_agents)

    def _check_org(self, email: str) -> None:
        org_state = self._org_states.get(email)
        if org_state == "disabled":
            raise ApiError(400, "invalid_request_error", ORG_DISABLED)
        if org_state == "not_allowed":
            raise ApiError(403, "permission_error", OAUTH_NOT_ALLOWED)

    def account(self, email: Optional[str] = None) -> Account:
        """The account for an email, created on first sight with stable uuids."""
        with self._lock:
            return self._account(email or self.config.default_email)

    # ------------------------------------------------------------------ OAuth

    def authorize(self, params: Mapping[str, Any], email: Optional[str] = None) -> dict:
        """Validate an authorize query and auto-approve it (there is no real login)."""
        with self._lock:
            self.counters["authorize_requests"] += 1
            cfg = self.config
            client_id = _str(params, "client_id")
            if client_id is None:
                raise AuthorizeError("invalid_request", "Missing client_id")
            if client_id != cfg.client_id:
                raise AuthorizeError("invalid_client", "Unknown client_id")
            redirect_uri = _str(params, "redirect_uri")
            if redirect_uri is None:
                raise AuthorizeError("invalid_request", "Missing redirect_uri")
            parts = urlsplit(redirect_uri)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
                raise AuthorizeError("invalid_request", "Invalid redirect_uri")
            if params.get("response_type") != "code":
                raise AuthorizeError("unsupported_response_type", "response_type must be 'code'")
            challenge = _str(params, "code_challenge")
            if challenge is None:
                raise AuthorizeError("invalid_request", "Missing code_challenge (PKCE is required)")
            if params.get("code_challenge_method") != "S256":
                raise AuthorizeError("invalid_request", "code_challenge_method must be S256")
            if not re.fullmatch(r"[A-Za-z0-9\-_]{43}", challenge):
                raise AuthorizeError("invalid_request", "Malformed code_challenge")
            state = _str(params, "state")
            if state is None:
                raise AuthorizeError("invalid_request", "Missing state")
            scope = params.get("scope")
            scopes = tuple(scope.split()) if isinstance(scope, str) and scope.strip() else DEFAULT_SCOPES
            who = email or _str(params, "login_hint") or cfg.default_email
            self._account(who)
            code = secrets.token_urlsafe(32)
            self._codes[code] = _Code(
                client_id, redirect_uri, challenge, scopes, state, who, self.clock() + cfg.code_ttl
            )
            self.counters["authorize_ok"] += 1
        sep = "&" if parts.query else "?"
        return {
            "code": code,
            "state": state,
            "pasted": f"{code}#{state}",
            "redirect_uri": redirect_uri,
            "callback_url": redirect_uri + sep + urlencode({"code": code, "state": state}),
        }

    def token(self, params: Mapping[str, Any]) -> dict:
        """Dispatch a token endpoint body by grant_type."""
        grant = params.get("grant_type")
        if grant == "authorization_code":
            return self.exchange(params)
        if grant == "refresh_token":
            return self.refresh(
                params.get("refresh_token"), params.get("client_id"), params.get("scope")
            )
        if not isinstance(grant, str) or not grant:
            raise OAuthError("invalid_request", "Missing grant_type")
        raise OAuthError("unsupported_grant_type", f"Unsupported grant_type: {grant}")

    def exchange(self, params: Mapping[str, Any]) -> dict:
        """authorization_code grant; failures never burn the code, success does."""
        for key in ("code", "client_id", "redirect_uri", "code_verifier"):
            if _str(params, key) is None:
                raise OAuthError("invalid_request", f"Missing required parameter: {key}")
        state_value = params.get("state")
        if state_value is not None and not isinstance(state_value, str):
            raise OAuthError("invalid_request", "state must be a string")
        with self._lock:
            if params["client_id"] != self.config.client_id:
                raise OAuthError("invalid_client", "Invalid client_id", 401)
            code = self._codes.get(params["code"])
            if code is None:
                raise OAuthError("invalid_grant", BAD_CODE)
            if code.used:
                raise OAuthError("invalid_grant", "Authorization code has already been used")
            if self.clock() >= code.expires_at:
                raise OAuthError("invalid_grant", "Authorization code has expired")
            if code.client_id != params["client_id"]:
                raise OAuthError("invalid_grant", "Authorization code was issued to another client")
            if code.redirect_uri != params["redirect_uri"]:
                raise OAuthError("invalid_grant", BAD_REDIRECT)
            verifier = params["code_verifier"]
            if not _VERIFIER_RE.match(verifier):
                raise OAuthError("invalid_grant", "Invalid code_verifier format")
            if s256(verifier) != code.challenge:
                raise OAuthError("invalid_grant", "Invalid code verifier")
            if state_value and state_value != code.state:
                raise OAuthError("invalid_grant", "State mismatch")
            self._check_org(code.email)
            code.used = True
            long_lived = params.get("expires_in") == LONG_LIVED_TTL
            scopes = ("user:inference",) if long_lived else code.scopes
            fam = _Family(code.email, code.client_id, scopes)
            self._families.append(fam)
            out = self._issue(fam, scopes, with_refresh=not long_lived,
                              ttl=LONG_LIVED_TTL if long_lived else None)
            self.counters["exchange_ok"] += 1
            return out

    def refresh(
        self,
        refresh_token: Any,
        client_id: Any = None,
        scope: Any = None,
        *,
        require_client: bool = True,
    ) -> dict:
        """Refresh grant with rotation; a dead token is a replay and may take its family down."""
        if not isinstance(refresh_token, str) or not refresh_token:
            raise OAuthError("invalid_request", "Missing required parameter: refresh_token")
        if client_id is not None and not isinstance(client_id, str):
            raise OAuthError("invalid_request", "client_id must be a string")
        if require_client and not client_id:
            raise OAuthError("invalid_request", "Missing required parameter: client_id")
        if scope is not None and not isinstance(scope, str):
            raise OAuthError("invalid_request", "scope must be a string")
        with self._lock:
            cfg = self.config
            if client_id and client_id != cfg.client_id:
                raise OAuthError("invalid_client", "Invalid client_id", 401)
            rt = self._refresh.get(refresh_token)
            if rt is None or rt.status != "active":
                self.counters["refresh_replays"] += 1
                if rt is not None and rt.status == "rotated" and cfg.family_revocation:
                    if self._revoke_family(rt.family):
                        self.counters["family_revocations"] += 1
                raise OAuthError("invalid_grant", REFRESH_INVALID)
            fam = rt.family
            self._check_org(fam.email)
            if client_id and client_id != fam.client_id:
                raise OAuthError("invalid_grant", "Refresh token was issued to another client")
            scopes = fam.scopes
            if scope and scope.strip():
                wanted = tuple(scope.split())
                extra = [s for s in wanted if s not in fam.scopes]
                if extra:
                    raise OAuthError("invalid_scope", f"Scope not granted: {' '.join(extra)}")
                scopes = wanted
            rotate = not cfg.omit_refresh_token
            if rotate:
                rt.status = "rotated"
                self._active_refresh -= 1
            out = self._issue(fam, scopes, with_refresh=rotate)
            self.counters["refresh_ok"] += 1
            return out

    # ------------------------------------------------------------------ API

    def authenticate(self, token: Optional[str]) -> tuple[Account, tuple]:
        """Resolve a bearer token or raise the 401 the API host would send."""
        if not token:
            raise ApiError(401, "authentication_error", "Missing bearer token")
        with self._lock:
            a = self._access.get(token)
            if a is None:
                raise ApiError(401, "authentication_error", "Invalid bearer token")
            if a.revoked:
                raise ApiError(401, "authentication_error", "OAuth token has been revoked.")
            if self.clock() >= a.expires_at:
                raise ApiError(401, "authentication_error", TOKEN_EXPIRED)
            self._check_org(a.email)
            return self._accounts[a.email], a.scopes

    def _profile_scope(self, scopes: tuple) -> None:
        if "user:profile" not in scopes:  # long-lived (setup) tokens: user:inference only
            raise ApiError(403, "permission_error", "OAuth token does not meet scope requirement user:profile")

    def profile(self, token: Optional[str]) -> dict:
        acc, scopes = self.authenticate(token)
        self._profile_scope(scopes)
        email_key = self.config.profile_shape
        account = {"uuid": acc.uuid, email_key: acc.email, "display_name": acc.display_name}
        org = {"uuid": acc.org_uuid, "name": acc.org_name}
        if email_key == "email":  # the 2026 shape carries the plan too
            account.update(has_claude_max=True, has_claude_pro=False)
            org.update(organization_type="claude_max", billing_type="stripe_subscription",
                       rate_limit_tier="default_claude_max_20x", has_extra_usage_enabled=False,
                       subscription_status="active")
        return {"account": account, "organization": org,
                "application": {"uuid": str(uuid.uuid5(_ACCOUNT_NS, "app")), "name": "Claude Code",
                                "slug": "claude-code"}}

    def usage(self, token: Optional[str]) -> dict:
        _, scopes = self.authenticate(token)
        self._profile_scope(scopes)
        now = _dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc).replace(microsecond=0)

        def window(hours: int) -> dict:
            return {"utilization": 0.0, "resets_at": (now + _dt.timedelta(hours=hours)).isoformat()}

        return {"five_hour": window(5), "seven_day": window(24 * 7), "seven_day_opus": None}

    def create_api_key(self, token: Optional[str]) -> dict:
        _, scopes = self.authenticate(token)
        if "org:create_api_key" not in scopes:
            raise ApiError(403, "permission_error", "Token lacks the org:create_api_key scope")
        return {"raw_key": API_KEY_PREFIX + secrets.token_urlsafe(64)}

    def message(self, token: Optional[str], request: Mapping[str, Any]) -> dict:
        """A minimal Messages API answer; says plainly it does not come from Claude."""
        self.authenticate(token)
        if self.config.claude_code_only:
            raise ApiError(400, "invalid_request_error", CLAUDE_CODE_ONLY)
        model = request.get("model") if isinstance(request.get("model"), str) else "claude-emulator"
        chars = 0
        for m in request.get("messages") or ():
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(b.get("text", "")) for b in content if isinstance(b, dict))
        text = "Hello from the Claude OAuth emulator (this is not Claude)."
        return {
            "id": "msg_emu_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": max(1, chars // 4), "output_tokens": len(text) // 4},
        }

    # ------------------------------------------------------------------ internals (lock held)

    def _account(self, email: str) -> Account:
        acc = self._accounts.get(email)
        if acc is None:
            acc_uuid = str(uuid.uuid5(_ACCOUNT_NS, "account:" + email))
            org_uuid = str(uuid.uuid5(_ACCOUNT_NS, "org:" + email))
            local = email.split("@", 1)[0] or email
            acc = Account(acc_uuid, email, local, org_uuid, f"{email}'s Organization")
            self._accounts[email] = acc
        return acc

    def _issue(self, fam: _Family, scopes: tuple, *, with_refresh: bool, ttl: Optional[int] = None) -> dict:
        cfg = self.config
        ttl = cfg.access_ttl if ttl is None else ttl
        access = ACCESS_PREFIX + secrets.token_urlsafe(64)
        self._access[access] = _Access(fam.email, scopes, self.clock() + ttl, fam)
        fam.access_tokens.append(access)
        acc = self._accounts[fam.email]
        out = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": ttl,
            "scope": " ".join(scopes),
            "organization": {"uuid": acc.org_uuid, "name": acc.org_name},
            "account": {"uuid": acc.uuid, "email_address": acc.email},
        }
        if with_refresh:
            refresh = REFRESH_PREFIX + secrets.token_urlsafe(64)
            self._refresh[refresh] = _Refresh(fam)
            fam.current_refresh = refresh
            self._active_refresh += 1
            out["refresh_token"] = refresh
        return out

    def _kill_refresh(self, token: str, rt: _Refresh) -> int:
        was_active = rt.status == "active"
        rt.status = "revoked"
        if was_active:
            self._active_refresh -= 1
            if rt.family.current_refresh == token:
                rt.family.current_refresh = None
            return 1
        return 0

    def _revoke_family(self, fam: _Family) -> int:
        n = 0
        if fam.current_refresh is not None:
            rt = self._refresh.get(fam.current_refresh)
            if rt is not None:
                n += self._kill_refresh(fam.current_refresh, rt)
        for tok in fam.access_tokens:
            a = self._access.get(tok)
            if a is not None and not a.revoked:
                a.revoked = True
                n += 1
        return n
