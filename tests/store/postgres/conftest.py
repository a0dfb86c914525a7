"""Fixtures shared by the PostgreSQL tier's tests: a fresh key, a tier on the test database,
and a plain asyncpg connection for looking at the tables directly."""

from __future__ import annotations

import pytest

from console.crypto import Keyring, generate_key
from console.store.postgres import PostgresTier


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
async def tier(pg_dsn, key):
    t = PostgresTier(pg_dsn, Keyring.from_spec(key))
    yield t
    await t.close()


@pytest.fixture
def connect():
    """``await connect(dsn)``: a plain asyncpg connection (the caller closes it)."""
    import asyncpg

    return asyncpg.connect
