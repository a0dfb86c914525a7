"""One user's tokens in and out: imports from Claude Code, the environment or a seed token
file; exports in the seed's single-user file format."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotLoggedIn, StaleWrite, UsageError
from ..tokens import BadValue, TokenRecord, check_values, parse_expires_at
from ..users import fix_command, shown
from .files import check_target, load_json, write_private

if TYPE_CHECKING:  # pragma: no cover
    from ..service import AuthService

CLAUDE_CODE_CREDENTIALS = "~/.claude/.credentials.json"


@dataclass
class ImportResult:
    record: TokenRecord
    source: str            # claude-code, env, file
    origin: str            # the path or the variable names
    changed: bool          # False: the stored token was already this one


def record_from_token_data(user_id: str, data: dict[str, Any], where: str) -> TokenRecord:
    """``{accessToken, refreshToken, expiresAt, scopes, subscriptionType}`` (or snake_case) as a record."""
    def get(*keys: str) -> Any:
        return next((data[k] for k in keys if data.get(k) not in (None, "")), None)

    access = get("accessToken", "access_token")
    if not isinstance(access, str) or not access:
        raise UsageError(f"{where} has no access token (accessToken)")
    refresh = get("refreshToken", "refresh_token")
    expires = get("expiresAt", "expires_at")
    try:
        expires_at = parse_expires_at(expires) if expires is not None else 0.0
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expiresAt {shown(repr(expires), 40)} is not a time in seconds or "
                         "milliseconds; nothing was imported") from None
    scopes = get("scopes", "scope") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    subscription = get("subscriptionType", "subscription_type")
    values = {"access_token": access, "refresh_token": refresh, "expires_at": expires_at, "scopes": scopes,
              "subscription_type": subscription}
    try:
        check_values(values)
    except BadValue as exc:
        raise UsageError(f"{where}: {exc}; nothing was imported",
                         hint="give a token file written by Claude Code or claude-console export") from None
    return TokenRecord(user_id=user_id, **values)


def read_import(kind: str, path: str | None, user_id: str, env: dict[str, str] | None = None
                ) -> tuple[TokenRecord, str]:
    """The record an import would store, and where it came from (nothing is written)."""
    if kind == "claude-code":
        source = Path(os.path.expanduser(path or CLAUDE_CODE_CREDENTIALS))
        try:
            data = load_json(source, "Claude Code's credentials file")
        except UsageError as exc:
            if path is None and not source.exists():
                raise UsageError(f"Claude Code's credentials are not at {source}",
                                 hint="give the path (on macOS they live in the Keychain: security "
                                      "find-generic-password -s 'Claude Code-credentials' -w > creds.json)"
                                 ) from None
            raise exc
        oauth = data.get("claudeAiOauth")
        if not isinstance(oauth, dict):
            raise UsageError(f"{source} has no claudeAiOauth section, so it holds no Claude login",
                             hint="log in with Claude Code first (claude, then /login)")
        return record_from_token_data(user_id, oauth, str(source)), str(source)
    if kind == "env":
        env = os.environ if env is None else env
        access = env.get("CLAUDE_ACCESS_TOKEN")
        if not access and env.get("CLAUDE_CODE_OAUTH_TOKEN"):  # a setup token: long-lived
            from ..long_lived import setup_token_record
            return setup_token_record(user_id, env["CLAUDE_CODE_OAUTH_TOKEN"]), "CLAUDE_CODE_OAUTH_TOKEN"
        if not access:
            raise UsageError("CLAUDE_ACCESS_TOKEN is not set, so there is nothing to import",
                             hint="set CLAUDE_ACCESS_TOKEN (and CLAUDE_REFRESH_TOKEN, CLAUDE_EXPIRES_AT)")
        data = {"accessToken": access, "refreshToken": env.get("CLAUDE_REFRESH_TOKEN"),
                "expiresAt": env.get("CLAUDE_EXPIRES_AT") or None}
        return record_from_token_data(user_id, data, "CLAUDE_EXPIRES_AT"), "environment"
    if kind == "file":
        if not path:
            raise UsageError("import file needs the PATH of a token file")
        source = Path(os.path.expanduser(path))
        data = load_json(source, "a token file ({accessToken, refreshToken, expiresAt})")
        if isinstance(data.get("claudeAiOauth"), dict):
            data = data["claudeAiOauth"]
        elif isinstance(data.get("users"), dict):
            raise UsageError(f"{source} is claude-console's own multi-user token file",
                             hint=f"point CLAUDE_TOKEN_FILE at it, or export one user: "
                                  f"CLAUDE_TOKEN_FILE={source} claude-console export --user U FILE")
        return record_from_token_data(user_id, data, str(source)), str(source)
    raise UsageError(f"unknown import source {kind!r}", hint="use claude-code, env or file")


async def import_tokens(service: "AuthService", kind: str, path: str | None = None,
                        user_id: str | None = None, *, force: bool = False,
                        expires_at: float | None = None) -> ImportResult:
    """Store a token set from Claude Code, the environment (also a setup token in
    ``CLAUDE_CODE_OAUTH_TOKEN``) or a seed token file for one user; ``expires_at`` overrides the
    expiry the source gives (or lacks)."""
    uid = service.user(user_id)
    record, origin = read_import(kind, path, uid)
    if expires_at is not None:  # --expires-at: the operator knows better than the source
        record = record.evolve(expires_at=expires_at)
    async with service.store.locked(uid):
        existing = await service.read_fresh(uid)
        stored = existing if existing is not None and existing.source != "env" else None
        if stored is not None and stored.access_token == record.access_token \
                and stored.refresh_token == record.refresh_token:
            return ImportResult(stored, kind, origin, changed=False)
        if stored is not None and not force and not stored.needs_login \
                and stored.expires_at > record.expires_at:
            raise UsageError(f"user '{shown(uid)}' already has a token that expires later than the one in {origin}; "
                             "nothing was changed", hint="pass --force to replace it anyway")
        now = service.clock.now()
        fresh = record.evolve(created_at=stored.created_at if stored else now,
                              refresh_count=stored.refresh_count if stored else 0,
                              last_used=stored.last_used if stored else None)
        try:
            saved = await service.store_record(fresh, expected_version=stored.version if stored else 0,
                                               action="import", detail=f"from {kind} ({origin})")
        except StaleWrite as exc:
            raise StaleWrite(f"user '{shown(uid)}' changed while importing; nothing was replaced",
                             hint="run the import again") from exc
    return ImportResult(saved, kind, origin, changed=True)


def token_file_data(record: TokenRecord) -> dict[str, Any]:
    """One user in the seed's token file format (expiresAt in seconds, as the seed writes it)."""
    data: dict[str, Any] = {"accessToken": record.access_token, "refreshToken": record.refresh_token,
                            "expiresAt": int(record.expires_at), "scopes": list(record.scopes)}
    if record.subscription_type:
        data["subscriptionType"] = record.subscription_type
    return data


async def export_tokens(service: "AuthService", path: str | Path, user_id: str | None = None, *,
                        force: bool = False) -> TokenRecord:
    """Write one user's tokens in the seed's single-user file format, 0600, atomically."""
    uid = service.user(user_id)
    target = check_target(path, force)
    record = await service.get_record(uid)
    if record is None:
        raise NotLoggedIn(f"user '{shown(uid)}' is not logged in, so there is nothing to export",
                          hint=f"run: {fix_command('login', uid)}")
    text = json.dumps(token_file_data(record), indent=2) + "\n"
    await asyncio.to_thread(write_private, target, text.encode())
    await service.record_event("export", uid, True, f"to {target.name}")
    return record
