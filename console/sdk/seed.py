"""The seed's SDK names (``litellm.proxy.auth.claude_*`` there) on top of the one engine.

``ClaudeAuthService``, ``ClaudeOAuthFlow`` and ``ClaudeOAuthHandler`` keep the seed's
signatures and return shapes (token data as ``{accessToken, refreshToken, expiresAt}``,
``None`` instead of an exception where the seed returned ``None``), but every call goes
through ``AuthService``: same storage, same single-flight refresh, same audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Optional

from .. import oauth as oauth_mod
from ..config import Settings, load_settings
from ..errors import ConsoleError
from ..service import AuthService
from ..tokens import TokenRecord, parse_expires_at

log = logging.getLogger("console.seed")


def token_data_of(record: TokenRecord) -> dict[str, Any]:
    """A record in the seed's token-data shape (expiresAt in seconds, as the seed wrote it)."""
    return {"accessToken": record.access_token, "refreshToken": record.refresh_token,
            "expiresAt": int(record.expires_at), "scopes": list(record.scopes),
            "account": {"email_address": record.account_email, "uuid": record.account_uuid}}


def record_of(user_id: str, data: dict[str, Any]) -> TokenRecord:
    """Seed token data (camelCase or snake_case) as a record."""
    get = lambda *keys: next((data[k] for k in keys if data.get(k) is not None), None)  # noqa: E731
    expires = get("expiresAt", "expires_at")
    if expires is None and get("expires_in") is not None:
        expires = time.time() + float(get("expires_in"))
    scopes = get("scopes", "scope") or []
    return TokenRecord(user_id=user_id, access_token=get("accessToken", "access_token") or "",
                       refresh_token=get("refreshToken", "refresh_token"),
                       expires_at=parse_expires_at(expires or 0),
                       scopes=scopes.split() if isinstance(scopes, str) else list(scopes))


def _settings(token_file: Path | str | None, encryption_key: str | None) -> Settings:
    settings = load_settings()
    changes = {}
    if token_file:
        changes["token_file"] = str(token_file)
    if encryption_key:
        changes["encryption_key"] = encryption_key
    return settings.replace(**changes) if changes else settings


class ClaudeAuthService(AuthService):
    """The seed's orchestrator: returns ``None`` where the seed did, and logs the reason."""

    def __init__(self, token_file: Path | str | None = None, encryption_key: str | None = None,
                 prisma_client: Any = None, cache: Any = None, *, settings: Settings | None = None,
                 **kwargs: Any) -> None:
        super().__init__(settings or _settings(token_file, encryption_key), **kwargs)
        self.token_file = self.settings.token_path
        self.oauth_flow = ClaudeOAuthFlow(service=self)

    async def get_access_token(self, user_id: str | None = None, auto_refresh: bool = True,
                               require_oauth: bool = False) -> Optional[str]:
        try:
            return await super().get_access_token(user_id, auto_refresh)
        except ConsoleError as exc:
            log.info("no valid token: %s", exc)
            return None

    async def start_oauth_flow(self, user_id: str | None = None) -> dict[str, str]:
        url, state = await self.oauth_flow.start_flow(user_id)
        return {"authorization_url": url, "state": state,
                "instructions": f"Open {url} in a browser, approve, then run: "
                                "claude-console callback 'CODE#STATE'"}

    async def complete_oauth_flow(self, authorization_code: str, state: str) -> dict[str, Any]:
        return await self.oauth_flow.complete_flow(authorization_code, state)

    async def refresh_tokens(self, user_id: str | None = None) -> Optional[dict[str, Any]]:
        try:
            return token_data_of(await self.refresh(user_id))
        except ConsoleError as exc:
            log.warning("manual refresh failed: %s", exc)
            return None

    async def clear_tokens(self, user_id: str | None = None) -> None:
        await self.logout(user_id)

    def get_headers(self, access_token: str | None = None) -> dict[str, str]:
        """Bearer + beta header for the last token this process loaded (seed: sync)."""
        if access_token is None:
            last = self.remembered(self.settings.default_user)
            if last is None:
                raise ValueError("No access token available. Please authenticate first: "
                                 "claude-console login (or await get_access_token() first)")
            access_token = last.access_token
        return super().get_headers(access_token)


class _UsesService:
    """Bound to a given service, else to the process-wide one on first use."""

    _service: AuthService | None = None

    @property
    def service(self) -> AuthService:
        if self._service is None:
            self._service = get_auth_service()
        return self._service


class ClaudeOAuthFlow(_UsesService):
    """PKCE login: ``start_flow() -> (url, state)``, ``complete_flow(code, state) -> token data``."""

    STATE_EXPIRY_SECONDS = 600

    def __init__(self, state_dir: str | None = None, *, service: AuthService | None = None) -> None:
        self._service = service

    def generate_pkce_pair(self) -> tuple[str, str]:
        verifier = oauth_mod.new_verifier()
        return verifier, oauth_mod.challenge_for(verifier)

    def generate_state(self) -> str:
        return oauth_mod.new_state()

    def build_authorization_url(self, state: str, code_challenge: str, scopes: list[str] | None = None) -> str:
        settings = self.service.settings
        if scopes:
            settings = settings.replace(scopes=" ".join(scopes))
        return oauth_mod.authorize_url(settings, state=state, challenge=code_challenge)

    async def start_flow(self, user_id: str | None = None) -> tuple[str, str]:
        start = await self.service.start_login(user_id)
        return start.authorization_url, start.state

    async def complete_flow(self, authorization_code: str, state: str | None = None) -> dict[str, Any]:
        record = await self.service.complete_login(authorization_code, state=state)
        return token_data_of(record)

    def cleanup_expired_states(self) -> int:
        return _run_sync(self.service.store.sweep_pending())


class ClaudeOAuthHandler(_UsesService):
    """One token set. Bound to a stored user when ``user_id`` is given; standalone otherwise."""

    def __init__(self, access_token: str | None = None, refresh_token: str | None = None,
                 expires_at: float | int | None = None, *, user_id: str | None = None,
                 service: AuthService | None = None, **_: Any) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_at = parse_expires_at(expires_at) if expires_at else None
        self.user_id = user_id
        self._service = service

    def is_token_expired(self, buffer: float | None = None) -> bool:
        if not self.access_token or not self.expires_at:
            return True
        margin = self.service.settings.refresh_buffer if buffer is None else buffer
        return time.time() + margin >= self.expires_at

    def _adopt(self, record: TokenRecord) -> dict[str, Any]:
        self.access_token, self.refresh_token = record.access_token, record.refresh_token
        self.expires_at = record.expires_at
        return token_data_of(record)

    async def refresh_access_token(self) -> dict[str, Any]:
        """Stored users refresh through the service (single flight); standalone ones directly."""
        if self.user_id is not None:
            return self._adopt(await self.service.refresh(self.user_id))
        if not self.refresh_token:
            raise ValueError("no refresh token: log in first (claude-console login)")
        answer = await self.service.oauth.refresh(self.refresh_token)
        self.access_token = answer.access_token
        self.refresh_token = answer.refresh_token or self.refresh_token
        self.expires_at = answer.expires_at
        return {"accessToken": self.access_token, "refreshToken": self.refresh_token,
                "expiresAt": int(self.expires_at), "scopes": answer.scopes}

    async def get_valid_token(self, user_id: str | None = None, auto_refresh: bool = True,
                              **_: Any) -> Optional[str]:
        uid = user_id or self.user_id
        try:
            if uid is not None or not self.access_token:
                token = await self.service.get_access_token(uid, auto_refresh=auto_refresh)
                record = await self.service.get_record(uid)
                if record is not None:
                    self._adopt(record)
                return token
            if not self.is_token_expired():
                return self.access_token
            if auto_refresh and self.refresh_token:
                await self.refresh_access_token()
                return self.access_token
        except ConsoleError as exc:
            log.info("no valid token: %s", exc)
        return None

    async def store_tokens(self, user_id: str, token_data: dict[str, Any]) -> TokenRecord:
        """Replace the user's tokens through the service: a compare-and-swap on the version
        read under the lock, the memory cache dropped, the write audited (``store``)."""
        record = record_of(user_id, token_data)
        async with self.service.store.locked(user_id):
            existing = await self.service.read_fresh(user_id)
            version = existing.version if existing is not None and existing.source != "env" else 0
            saved = await self.service.store_record(record, expected_version=version, action="store",
                                                    detail="seed SDK store_tokens")
        self.user_id = user_id
        self._adopt(saved)
        return saved

    def get_auth_headers(self) -> dict[str, str]:
        if not self.access_token:
            raise ValueError("No access token available. Please authenticate first: claude-console login")
        return self.service.get_headers(self.access_token)


def _run_sync(coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("call the async form of this method inside a running event loop")


_auth_service: ClaudeAuthService | None = None


def get_auth_service(token_file: Path | str | None = None, encryption_key: str | None = None,
                     prisma_client: Any = None, cache: Any = None) -> ClaudeAuthService:
    """The process-wide service (created on first call, as in the seed)."""
    global _auth_service
    if _auth_service is None:
        _auth_service = ClaudeAuthService(token_file, encryption_key)
    return _auth_service


def reset_auth_service() -> None:
    """Forget the singleton (tests, or after changing the environment)."""
    global _auth_service
    _auth_service = None


async def get_access_token(user_id: str | None = None) -> Optional[str]:
    return await get_auth_service().get_access_token(user_id)


async def ensure_authenticated(user_id: str | None = None) -> bool:
    return await get_auth_service().ensure_authenticated(user_id)


def get_headers(access_token: str | None = None) -> dict[str, str]:
    return get_auth_service().get_headers(access_token)


async def quick_authenticate() -> Optional[str]:
    return await get_auth_service().get_access_token()
