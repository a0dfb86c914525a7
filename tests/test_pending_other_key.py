"""A login started under another encryption key (another replica's, or one rotated away) is
skipped with one warning naming its key id, never blocks other logins, can still be finished
where its key is, and is swept once it expires."""

from __future__ import annotations

import logging
import time

import pytest

from console.config import load_settings
from console.crypto import Keyring, generate_key
from console.errors import ConsoleError
from console.service import AuthService


@pytest.fixture(params=["file", "postgres"])
def primary(request, console_env, monkeypatch):
    if request.param == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_dsn"))
    return request.param


def _service(monkeypatch, key: str) -> AuthService:
    monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", key)
    return AuthService(load_settings())


@pytest.mark.parametrize("round_", [1, 2])
async def test_a_login_under_another_key_blocks_no_one(primary, monkeypatch, emulator, login, caplog, round_):
    key_a, key_b = generate_key(), generate_key()
    kid_a = Keyring.from_spec(key_a).primary_id
    with_a = _service(monkeypatch, key_a)
    started = await with_a.start_login("ann")  # ann's verifier is sealed under key A
    approved = emulator.approve(started.authorization_url, email="ann@example.com")
    with_b = _service(monkeypatch, key_b)
    logged_out = 0
    try:
        with caplog.at_level(logging.WARNING, logger="console.store"):
            for uid in ("bob", "cy", "dee"):  # every later login works
                saved = await login(with_b, uid)
                assert saved.user_id == uid and not saved.needs_login
            for _ in range(2):  # a bare code looks for the newest login: ann's is skipped
                assert await with_b.store.newest_pending() is None
        warnings = [r.getMessage() for r in caplog.records if kid_a in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "'ann'" in warnings[0] and "skipped" in warnings[0]
        assert started.state not in warnings[0]  # the state is not named as a user

        with pytest.raises(ConsoleError) as refused:  # ann's code, where the key is missing
            await with_b.complete_login(approved["pasted"])
        assert kid_a in refused.value.message and "'ann'" in refused.value.message
        assert started.state not in refused.value.message

        ann = await with_a.complete_login(approved["pasted"])  # still open where its key is
        assert ann.user_id == "ann"
        for uid in ("bob", "cy", "dee"):
            try:
                await with_b.get_access_token(uid)
            except ConsoleError:
                logged_out += 1
        assert logged_out == 0
    finally:
        await with_a.aclose()
        await with_b.aclose()


async def test_a_login_under_another_key_is_swept_when_it_expires(primary, monkeypatch, emulator):
    key_a, key_b = generate_key(), generate_key()
    with_a = _service(monkeypatch, key_a)
    with_b = _service(monkeypatch, key_b)
    try:
        await with_a.start_login("ann")
        await with_b.start_login("bob")
        tier = with_b.store.primary
        assert await tier.sweep_pending() == 0  # alive: left for the process that has key A
        assert (await tier.newest_pending()).user_id == "bob"  # ann's is skipped, not an error
        later = time.time() + with_b.settings.pending_ttl + 1
        assert await tier.sweep_pending(later) == 2  # both expired: ann's too
        assert await with_a.store.primary.newest_pending() is None
    finally:
        await with_a.aclose()
        await with_b.aclose()
