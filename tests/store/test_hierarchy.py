"""The hierarchy's rules when the primary (PostgreSQL) is down: a real PostgresTier aimed at a
closed port, so the failure is the driver's own."""

import time

import pytest

from console.crypto import Keyring, generate_key
from console.errors import TierUnavailable
from console.store.env import EnvTier
from console.store.file import FileTier
from console.store.hierarchy import Hierarchy
from console.store.postgres import PostgresTier
from console.tokens import TokenRecord


def _store(tmp_path, allow_file_fallback=False):
    ring = Keyring.from_spec(generate_key())
    dead = PostgresTier("postgresql://postgres@127.0.0.1:1/none", ring)
    return Hierarchy([dead, FileTier(tmp_path / "t.json", ring), EnvTier({})],
                     allow_file_fallback=allow_file_fallback)


def rec(uid):
    return TokenRecord(user_id=uid, access_token=f"sk-ant-oat01-{uid}", expires_at=time.time() + 999)


async def test_reads_fall_back_but_unknown_users_are_unreachable_not_logged_out(tmp_path):
    store = _store(tmp_path)
    await store.tier("file").put(rec("alice"))
    assert (await store.get("alice")).source == "file"
    with pytest.raises(TierUnavailable):
        await store.get("bob")  # maybe stored in the database: we cannot say "not logged in"
    assert any("postgres tier skipped" in w for w in store.warnings)
    await store.close()


async def test_listing_without_the_primary_is_refused(tmp_path):
    store = _store(tmp_path)
    await store.tier("file").put(rec("alice"))
    with pytest.raises(TierUnavailable):
        await store.list()
    await store.close()


async def test_writes_fail_loudly_unless_file_fallback_is_allowed(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(TierUnavailable, match="nothing was stored"):
        await store.put(rec("carol"))
    assert await store.tier("file").get("carol") is None
    await store.close()
    relaxed = _store(tmp_path, allow_file_fallback=True)
    stored = await relaxed.put(rec("carol"))
    assert stored.source == "file" and (await relaxed.tier("file").get("carol")) is not None
    await relaxed.close()
