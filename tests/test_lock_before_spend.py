"""Lock before you spend: a refresh takes every lock its save needs before the request goes out;
one that cannot take them does not refresh (the token is not spent)."""

from __future__ import annotations

import time

import pytest

from console.config import load_settings
from console.errors import StorageError
from console.service import AuthService

pytestmark = pytest.mark.postgres
TOKENS = '"LiteLLM_ClaudeOAuthTokens"'


async def test_a_row_locked_by_another_session_is_not_refreshed(pg_env, pg_dsn, emulator, login):
    import asyncpg

    service = AuthService(load_settings())
    admin = await asyncpg.connect(pg_dsn)
    try:
        await login(service, "ann")
        before = await service.store.get_fresh("ann")
        service.store.primary.row_lock_timeout = 0.3
        tx = admin.transaction()
        await tx.start()
        await admin.fetchval(f"SELECT 1 FROM {TOKENS} WHERE user_id = 'ann' FOR UPDATE")
        asked = emulator.stats()["refresh_requests"]
        started = time.monotonic()
        with pytest.raises(StorageError, match="locked by another session.*nothing was refreshed"):
            await service.refresh("ann", force=True)
        assert time.monotonic() - started < 5
        assert emulator.stats()["refresh_requests"] == asked  # nothing spent
        await tx.rollback()
        after = await service.refresh("ann", force=True)  # the lock is gone: the same token still works
        assert after.refresh_count == before.refresh_count + 1 and not after.needs_login
    finally:
        await admin.close()
        await service.aclose()
