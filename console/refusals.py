"""Every refusal the provider is known to give, named: one table, one line each.

The table maps what Claude answers (HTTP status, error type, description, an HTML page) on a
token call or an API call to the line an operator reads, the exit code, and what happens to
the stored tokens. ``oauth.py`` and ``service.py`` raise from it; the README shows it
(``markdown_table()`` prints the same rows). Unknown refusals fall back to a generic line
that still quotes what the provider said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .config import TOKEN_URL

# Token-record statuses a refusal can put on a stored record (see tokens.token_status).
ACCOUNT_DISABLED = "account_disabled"
OAUTH_NOT_ALLOWED = "oauth_not_allowed"
BLOCKED = (ACCOUNT_DISABLED, OAUTH_NOT_ALLOWED)


@dataclass(frozen=True)
class Answer:
    """What the provider said, reduced to what the table matches on."""

    call: str                  # "exchange", "refresh" (token host) or "api"
    status: int
    error: str | None = None   # OAuth error code or Anthropic error type
    description: str = ""
    html: bool = False         # an HTML page (Cloudflare), not JSON

    @property
    def token_call(self) -> bool:
        return self.call in ("exchange", "refresh")

    def said(self) -> str:
        """The provider's words, quoted as they came (HTML shortened to its status)."""
        if self.html:
            return f"HTTP {self.status} HTML page"
        words = " ".join(w for w in (self.error, f'"{self.description}"' if self.description else "") if w)
        return f"HTTP {self.status} {words}".rstrip()


@dataclass(frozen=True)
class Refusal:
    kind: str
    answer: str                    # what the provider answers (README column)
    match: Callable[[Answer], bool]
    message: str                   # one line; {what} {said} {url} {agent} {user}
    hint: str
    exit_code: int
    stored: str                    # what happens to the stored tokens (README column)
    marks: str | None = None       # a status the stored record gets

    def line(self, answer: Answer, **values: str) -> tuple[str, str]:
        fields = {"what": "", "said": answer.said(), "url": "", "agent": "", "user": "U",
                  "current": TOKEN_URL, **values}
        return self.message.format(**fields), self.hint.format(**fields)


def _has(answer: Answer, *words: str) -> bool:
    text = answer.description.lower()
    return all(w.lower() in text for w in words)


REFUSALS: tuple[Refusal, ...] = (
    Refusal("cloudflare", 'HTML 403 from Cloudflare ("error code: 1010", "Access denied") on a token call',
            lambda a: a.token_call and a.status == 403 and (a.html or _has(a, "error code: 1010")),
            "{what} refused: the token host refused this client's signature (Cloudflare 1010, HTTP 403)",
            "set CLAUDE_OAUTH_USER_AGENT (claude_oauth.user_agent, now {agent!r}); stored tokens are "
            "unchanged, retry after that", 2, "unchanged, retry allowed"),
    Refusal("moved", "404 `not_found_error` from the token URL",
            lambda a: a.token_call and a.status == 404,
            "{what} failed: the token endpoint {url} answered 404 (not_found_error): it has moved",
            "the current one is {current}: set claude_oauth.token_url (CLAUDE_OAUTH_TOKEN_URL); stored "
            "tokens are unchanged", 2, "unchanged"),
    Refusal("redirect_uri", "`invalid_grant` \"Invalid 'redirect_uri' in request\"",
            lambda a: a.call == "exchange" and a.error == "invalid_grant" and _has(a, "redirect"),
            "the code was rejected ({said}): the redirect URI differs from the one this login started with",
            "the code is bound to its login's redirect URI: check claude_oauth.redirect_uri "
            "(CLAUDE_OAUTH_REDIRECT_URI) and --redirect-uri, then log in again; stored tokens are unchanged",
            2, "unchanged"),
    Refusal("bad_code", "`invalid_grant` \"Invalid 'code' in request.\"",
            lambda a: a.call == "exchange" and a.error == "invalid_grant",
            "the code was rejected ({said}): it is wrong, used or expired",
            "the login stays open: open its URL again and paste the new code, or run: "
            "claude-console login --user {user}", 1, "unchanged"),
    Refusal("refresh_rejected", "`invalid_grant` on refresh",
            lambda a: a.call == "refresh" and a.error == "invalid_grant",
            "user {user!r} must log in again: the provider rejected the refresh token ({said}): it was "
            "spent or revoked", "run: claude-console login --user {user}", 1,
            "marked `needs_login` (after a re-read of the store)", "needs_login"),
    Refusal("invalid_scope", "`invalid_scope` on refresh",
            lambda a: a.call == "refresh" and a.error == "invalid_scope",
            "{what} rejected ({said}): the provider refused the scopes sent with the refresh",
            "turn claude_oauth.refresh_scope off (CLAUDE_OAUTH_REFRESH_SCOPE=0); stored tokens are unchanged",
            2, "unchanged"),
    Refusal(ACCOUNT_DISABLED, '400 "This organization has been disabled."',
            lambda a: a.status in (400, 403) and _has(a, "organization", "disabled"),
            "Claude says the organization of user {user!r} has been disabled ({said})",
            "the tokens are kept and not refreshed; once it is enabled again run: claude-console refresh "
            "--user {user} (or log in again)", 1,
            "kept; status `account_disabled`, never refreshed until an operator acts", ACCOUNT_DISABLED),
    Refusal(OAUTH_NOT_ALLOWED, '403 "OAuth authentication is currently not allowed for this organization."',
            lambda a: a.status in (400, 403) and _has(a, "not allowed", "organization"),
            "Claude does not allow OAuth for the organization of user {user!r} ({said})",
            "an organization admin must allow it; the tokens are kept and not refreshed; then run: "
            "claude-console refresh --user {user} (or log in again)", 1,
            "kept; status `oauth_not_allowed`, not refreshed", OAUTH_NOT_ALLOWED),
    Refusal("token_expired", '401 "OAuth token has expired" from the API',
            lambda a: a.call == "api" and a.status == 401 and _has(a, "expired"),
            "the API rejected the token of user {user!r} even after a refresh ({said})",
            "run: claude-console login --user {user}", 1, "rotated by one reactive refresh"),
    Refusal("beta_missing", '401 "OAuth authentication is currently not supported."',
            lambda a: a.call == "api" and a.status == 401 and _has(a, "not supported"),
            "the API refused OAuth for this call ({said}): the oauth beta header was missing",
            "keep oauth-2025-04-20 in claude_oauth.beta_headers (CLAUDE_OAUTH_BETA_HEADERS)", 2, "unchanged"),
    Refusal("claude_code_only", '400 "only authorized for use with Claude Code"',
            lambda a: a.call == "api" and _has(a, "only authorized", "claude code"),
            "Claude says the token of user {user!r} may only be used by Claude Code ({said})",
            "the terms allow subscription tokens in Claude Code only: run it with "
            "claude-console exec --user {user} -- claude", 1, "unchanged"),
    Refusal("rate_limited", "429 on token calls",
            lambda a: a.status == 429,
            "{what} failed: rate limited by the provider (HTTP 429)",
            "wait a minute and retry; stored tokens are unchanged", 1, "unchanged; backoff, retried"),
)

_BY_KIND = {r.kind: r for r in REFUSALS}


def refusal(kind: str) -> Refusal:
    return _BY_KIND[kind]


def classify(answer: Answer) -> Refusal | None:
    """The first row that matches what the provider said, or None (a generic refusal)."""
    for row in REFUSALS:
        if row.match(answer):
            return row
    return None


def blocked_kind(last_error: str | None) -> str | None:
    """``account_disabled`` / ``oauth_not_allowed`` when a stored failure note says so."""
    if last_error:
        head = last_error.split(":", 1)[0]
        if head in BLOCKED:
            return head
    return None


def markdown_table() -> str:
    """The table the README shows, from the same rows the code uses."""
    rows = ["| provider answer | what the user sees | exit | stored tokens |", "|---|---|---|---|"]
    for r in REFUSALS:
        line, hint = r.line(Answer("refresh", 0), what="token refresh", url="URL", agent="AGENT")
        line = line.replace("HTTP 0", "…")
        rows.append(f"| {r.answer} | {line}; {hint} | {r.exit_code} | {r.stored} |")
    return "\n".join(rows)
