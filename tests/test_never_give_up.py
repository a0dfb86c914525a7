"""Never give up on a rotated token: when the store refuses the write (PostgreSQL down past
its patience, a full disk), the new token is held (journal + memory), served, reported on every
face, retried, and lands when the store is back. Counts users logged out: must be 0."""

from __future__ import annotations

import asyncio
import errno
import logging
import time

import pytest

from console.config import load_settings
from console.errors import ConsoleError, NotYetStored, TierUnavailable
from console.service import AuthService

pytestmark = pytest.mark.postgres


async def _expire(service: AuthService, uid: str) -> None:
    old = await service.store.get_fresh(uid)
    await service.store.put(old.evolve(expires_at=time.time() - 60), expected_version=old.version)
    service.forget(uid)


async def test_postgres_down_past_write_patience_during_a_refresh(private_pg_env, private_pg, emulator, login):
    users = ["ann", "bob"]
    service = AuthService(load_settings())
    try:
        for uid in users:
            await login(service, uid)
            await _expire(service, uid)
        service.store.primary.write_patience = 1.5  # the test's patience; the default is 30 s
        emulator.state.configure(latency_ms=800)
        refreshes = [asyncio.ensure_future(service.get_access_token(uid)) for uid in users]
        await asyncio.sleep(0.4)  # the requests are out: the provider will rotate
        await asyncio.to_thread(private_pg.stop, "fast")
        tokens = await asyncio.wait_for(asyncio.gather(*refreshes), 30)  # served: the live tokens
        emulator.state.configure(latency_ms=0)
        assert emulator.stats()["refresh_ok"] == 2
        assert set(service.held_users()) == set(users)
        with pytest.raises(NotYetStored, match="held locally, not yet stored"):
            await service.refresh("ann", force=True)  # cannot land first: nothing is spent
        assert emulator.stats()["refresh_requests"] == 2
        assert await service.get_access_token("ann") == tokens[0]
        health = {h.name: h for h in await service.health()}
        assert health["journal"].state == "held" and "ann" in health["journal"].detail
        await asyncio.sleep(2.0)  # down for longer than the write patience, still held

        await asyncio.to_thread(private_pg.start)
        for _ in range(200):
            if not service.held_users():
                break
            await asyncio.sleep(0.1)
        assert service.held_users() == {}
        logged_out = 0
        for uid, token in zip(users, tokens):
            stored = await service.store.get_fresh(uid)
            assert stored.access_token == token  # the held token landed
            try:
                await service.refresh(uid, force=True)
            except ConsoleError:
                logged_out += 1
        assert logged_out == 0
        assert emulator.stats()["refresh_replays"] == 0
        trail = await service.audit_trail("ann")
        assert any(e.action == "recovery" for e in trail)
    finally:
        if not private_pg.running:
            private_pg.start()
        await service.aclose()


async def test_a_new_process_sees_the_held_token_and_lands_it(private_pg_env, private_pg, emulator, login, capsys):
    """The holding process dies while PostgreSQL is down: the next process reports the user as
    held (health exit 3) and writes the token back once PostgreSQL answers."""
    from console.cli import main

    service = AuthService(load_settings())
    await login(service, "cy")
    await _expire(service, "cy")
    service.store.primary.write_patience = 0.5
    emulator.state.configure(latency_ms=600)
    pending = asyncio.ensure_future(service.get_access_token("cy"))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(private_pg.stop, "fast")
    token = await asyncio.wait_for(pending, 30)
    emulator.state.configure(latency_ms=0)
    service._held.clear()  # this process "dies": only the journal keeps the token
    for task in service._retrying.values():
        task.cancel()
    try:
        code = await asyncio.to_thread(main, ["health"])
        out = capsys.readouterr().out
        assert code == 3 and "held locally, not yet stored" in out
    finally:
        await asyncio.to_thread(private_pg.start)
    code = await asyncio.to_thread(main, ["status", "--user", "cy"])
    assert code == 0, capsys.readouterr()
    async with AuthService(load_settings()) as again:
        assert (await again.store.get_fresh("cy")).access_token == token
        await again.refresh("cy", force=True)  # not logged out
    try:
        await service.aclose()
    except ConsoleError:
        pass


async def test_postgres_restart_mid_refresh_loses_nothing(private_pg_env, private_pg, emulator, login, caplog):
    """Refreshes in flight when the (private) server restarts still land; nothing needs a new login."""
    users = [f"user{i}" for i in range(16)]
    service = AuthService(load_settings(database_pool_size=40))
    await asyncio.gather(*[login(service, uid) for uid in users])
    emulator.state.configure(latency_ms=150)
    caplog.set_level(logging.WARNING, logger="console.store.postgres")
    stop = asyncio.Event()
    done, failed = {u: 0 for u in users}, {u: 0 for u in users}

    async def keep_refreshing(uid: str) -> None:
        while not stop.is_set():
            try:
                await service.refresh(uid, force=True)
                done[uid] += 1
            except TierUnavailable:
                failed[uid] += 1  # refused before asking the provider, or held: nothing lost
                await asyncio.sleep(0.05)

    try:
        tasks = [asyncio.create_task(keep_refreshing(u)) for u in users]
        await asyncio.sleep(0.6)
        await asyncio.to_thread(private_pg.stop, "fast")
        await asyncio.to_thread(private_pg.start)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        records = await asyncio.gather(*[service.refresh(uid, force=True) for uid in users])
        assert not any(r.needs_login for r in records)
        stats = emulator.stats()
        assert stats["refresh_replays"] == 0 and stats["family_revocations"] == 0
        lost = [r for r in caplog.records if "connection" in r.getMessage() and "lost" in r.getMessage()]
        assert lost, "the restart did not hit a refresh in flight; the test proved nothing"
        assert all(done[u] >= 2 for u in users)
        after = await service.health()
        assert next(h for h in after if h.name == "postgres").state == "up"
    finally:
        stop.set()
        try:
            await service.aclose()
        except ConsoleError:
            pass
