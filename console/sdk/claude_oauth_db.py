"""The seed's database handler, ``ClaudeOAuthDatabase``, over the PostgreSQL tier.

Same constructor and methods as the seed's (``litellm.proxy.auth.claude_oauth_db``), same
return shapes (``True``/``False``, ``None`` when absent, token data as ``accessToken``,
``refreshToken``, ``expiresAt`` in seconds), but the storage is ours: encrypted with the
keyring, compare-and-swap on the version, the seed's table and columns. Errors are logged
with their one-line reason and answered the way the seed answered them.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from ..crypto import Keyring
from ..errors import ConsoleError
from ..store.postgres import PostgresTier, writing_as
from ..tokens import TokenRecord, parse_expires_at

log = logging.getLogger("console.claude_oauth_db")


class ClaudeOAuthDatabase:
    """Token rows in ``"LiteLLM_ClaudeOAuthTokens"``; ``pool_or_dsn`` is a DSN or an asyncpg pool."""

    def __init__(self, pool_or_dsn: Any, encryption_key: Optional[str] = None, *,
                 keyring: Keyring | None = None) -> None:
        keyring = keyring if keyring is not None else Keyring.from_spec(encryption_key)
        if isinstance(pool_or_dsn, PostgresTier):
            self.tier = pool_or_dsn
        elif isinstance(pool_or_dsn, str):
            self.tier = PostgresTier(pool_or_dsn, keyring)
        else:
            self.tier = PostgresTier("", keyring, pool=pool_or_dsn)

    async def close(self) -> None:
        await self.tier.close()

    async def store_tokens(self, user_id: str, access_token: str, refresh_token: Optional[str],
                           expires_at: int | float, scopes: list, created_by: Optional[str] = None) -> bool:
        """Insert or replace the user's tokens (the seed counts a replacement as a refresh)."""
        try:
            async with self.tier.locked(user_id):
                existing = await self.tier.get(user_id)
                record = (existing or TokenRecord(user_id=user_id, access_token="")).evolve(
                    access_token=access_token, refresh_token=refresh_token,
                    expires_at=parse_expires_at(expires_at), scopes=list(scopes or []),
                    refresh_count=existing.refresh_count + 1 if existing else 0, needs_login=False)
                with writing_as(created_by):
                    await self.tier.put(record, existing.version if existing else 0)
            return True
        except ConsoleError as exc:
            log.error("storing tokens for %s failed: %s", user_id, exc)
            return False

    async def get_tokens(self, user_id: str) -> Optional[dict[str, Any]]:
        try:
            record = await self.tier.get(user_id)
            if record is None:
                return None
            await self.tier.touch(user_id, time.time())
        except ConsoleError as exc:
            log.error("reading tokens for %s failed: %s", user_id, exc)
            return None
        return {"accessToken": record.access_token, "refreshToken": record.refresh_token,
                "expiresAt": int(record.expires_at), "scopes": list(record.scopes),
                "refreshCount": record.refresh_count}

    async def delete_tokens(self, user_id: str) -> bool:
        try:
            async with self.tier.locked(user_id):
                await self.tier.delete(user_id)
            return True
        except ConsoleError as exc:
            log.error("deleting tokens for %s failed: %s", user_id, exc)
            return False

    async def get_expiring_tokens(self, minutes: int = 10) -> list:
        """User ids whose access token expires within ``minutes`` and that can be refreshed."""
        try:
            records = await self.tier.list()
        except ConsoleError as exc:
            log.error("listing expiring tokens failed: %s", exc)
            return []
        limit = time.time() + minutes * 60
        return sorted(r.user_id for r in records if r.refresh_token and r.expires_at <= limit)

    async def update_token_expiry(self, user_id: str, new_access_token: str, new_expires_at: int | float,
                                  new_refresh_token: Optional[str] = None,
                                  expected_version: Optional[int] = None) -> bool:
        """Store a refreshed access token (and the rotated refresh token, when given).

        A compare-and-swap on the version read here (or on ``expected_version``): a write
        racing another refresh is refused rather than rolling a newer token back.
        """
        try:
            async with self.tier.locked(user_id):
                current = await self.tier.get(user_id)
                if current is None:
                    log.error("updating tokens for %s failed: no tokens are stored", user_id)
                    return False
                fresh = current.evolve(access_token=new_access_token,
                                       refresh_token=new_refresh_token or current.refresh_token,
                                       expires_at=parse_expires_at(new_expires_at),
                                       refresh_count=current.refresh_count + 1, last_refresh_at=time.time(),
                                       last_refresh_error=None, refresh_failures=0, needs_login=False,
                                       last_used=time.time())
                version = current.version if expected_version is None else expected_version
                await self.tier.put(fresh, version)
            return True
        except ConsoleError as exc:
            log.error("updating tokens for %s failed: %s", user_id, exc)
            return False

    async def list_tokens(self) -> list[dict[str, Any]]:
        """Every user's token metadata; no token leaves the database (nothing is decrypted)."""
        try:
            records = await self.tier.list()
        except ConsoleError as exc:
            log.error("listing tokens failed: %s", exc)
            return []
        return [{"user_id": r.user_id, "expiresAt": int(r.expires_at), "scopes": list(r.scopes),
                 "refreshCount": r.refresh_count, "lastUsed": r.last_used,
                 "hasRefreshToken": bool(r.refresh_token), "accountEmail": r.account_email,
                 "needsLogin": r.needs_login, "version": r.version}
                for r in sorted(records, key=lambda r: r.user_id)]
