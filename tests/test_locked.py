"""Rows that cannot be decrypted (no key, or another key) are ``locked`` with the key id, in
``users``, ``status --all``, the API, the board; ``health`` exits non-zero (issue 13).
File tier and PostgreSQL."""

from __future__ import annotations

import json

import httpx
import pytest

from console.api import create_api
from console.config import load_settings
from console.crypto import Keyring, generate_key
from console.service import AuthService
from console.tokens import Status, TokenRecord, token_status
from console.widgets.board_view import BoardView
from console.widgets.status_badge import LABELS, MEANINGS, status_class

from inputs_kit import run_main, store_digest


def _login(emulator, user: str) -> None:
    start = run_main(["login", "--no-browser", "--json", "--user", user])
    approved = emulator.approve(json.loads(start.out)["authorization_url"], email=f"{user}@example.com")
    assert run_main(["callback", approved["pasted"]]).code == 0


def _kid(spec: str) -> str:
    return Keyring.from_spec(spec).primary_id


@pytest.fixture(params=["file", "postgres"])
def locked_scene(request, console_env, emulator, monkeypatch):
    """alice and bob stored under key A, then the console runs with key B only."""
    if request.param == "postgres":
        env = request.getfixturevalue("pg_env")
    else:
        env = {**console_env, "CLAUDE_TOKEN_ENCRYPTION_KEY": generate_key()}
        monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", env["CLAUDE_TOKEN_ENCRYPTION_KEY"])
    old = env["CLAUDE_TOKEN_ENCRYPTION_KEY"]
    _login(emulator, "alice")
    _login(emulator, "bob")
    new = generate_key()
    monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", new)
    return {**env, "CLAUDE_TOKEN_ENCRYPTION_KEY": new, "OLD_KEY": old}, _kid(old)


# (verb, exit code, words every locked user's line holds, or a line that must appear)
LOCKED_VERBS = [
    (["users"], 0, "locked (key {kid})"),
    (["status", "--all"], 1, "alice: locked: its tokens are under key id {kid}, which is not configured"),
    (["health"], 3, "tokens    locked          2 users locked (2 under key id {kid}, not configured)"),
]


@pytest.mark.parametrize("argv,code,words", LOCKED_VERBS, ids=[" ".join(v[0]) for v in LOCKED_VERBS])
def test_rows_under_another_key_are_locked_with_the_key_id(locked_scene, argv, code, words):
    env, kid = locked_scene
    before = store_digest(env)
    result = run_main(argv)
    assert result.code == code and words.format(kid=kid) in result.out, result
    assert "active" not in result.out and "Traceback" not in result.err
    assert store_digest(env) == before


def test_users_json_says_locked_and_names_the_key(locked_scene):
    env, kid = locked_scene
    reports = json.loads(run_main(["users", "--json"]).out)
    assert [(r["user_id"], r["status"], r["locked_key"], r["usable"]) for r in reports] == [
        ("alice", "locked", kid, False), ("bob", "locked", kid, False)]


def test_with_the_old_key_added_back_they_are_active_again(locked_scene, monkeypatch):
    env, kid = locked_scene
    monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", f"{env['CLAUDE_TOKEN_ENCRYPTION_KEY']},{env['OLD_KEY']}")
    result = run_main(["users", "--json"])
    assert {r["status"] for r in json.loads(result.out)} == {"active"}
    assert run_main(["health"]).code == 0


async def test_the_api_lists_locked_users(locked_scene):
    env, kid = locked_scene
    settings = load_settings().replace(master_key=None)
    service = AuthService(settings)
    try:
        app = create_api(service, settings, insecure_no_auth=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            body = (await client.get("/auth/claude/users")).json()
            status = (await client.get("/auth/claude/oauth/status", params={"user_id": "alice"}))
    finally:
        await service.aclose()
    assert {(u["user_id"], u["status"], u["locked_key"]) for u in body["users"]} == {
        ("alice", "locked", kid), ("bob", "locked", kid)}
    assert status.status_code >= 400 and kid in status.text   # reading one user names the key


@pytest.mark.parametrize("store", ["file", "postgres"])
def test_no_key_at_all_is_locked_too(console_env, emulator, monkeypatch, request, store):
    if store == "postgres":
        request.getfixturevalue("pg_env")
    else:
        monkeypatch.setenv("CLAUDE_TOKEN_ENCRYPTION_KEY", generate_key())
    kid = _kid(__import__("os").environ["CLAUDE_TOKEN_ENCRYPTION_KEY"])
    _login(emulator, "alice")
    monkeypatch.delenv("CLAUDE_TOKEN_ENCRYPTION_KEY")
    result = run_main(["users"])
    if result.code == 2:   # this store refuses to start without a key: that is one line too
        assert len(result.err_lines) == 1 and "CLAUDE_TOKEN_ENCRYPTION_KEY" in result.err, result
        return
    assert result.code == 0 and f"locked (key {kid})" in result.out, result
    assert run_main(["health"]).code == 3


def test_the_status_word_and_colour_exist_for_every_face():
    record = TokenRecord(user_id="a", access_token="<hidden>", expires_at=4e9)
    assert token_status(record) is Status.ACTIVE
    record.locked = "0badc0de"
    assert token_status(record) is Status.LOCKED and not Status.LOCKED.usable
    assert LABELS[Status.LOCKED] == "⊘ locked" and "key" in MEANINGS[Status.LOCKED]
    assert f"board--{status_class(Status.LOCKED)}" in BoardView.COMPONENT_CLASSES
    from pathlib import Path
    sheets = (Path(__file__).parents[1] / "styles")
    assert ".status-locked" in (sheets / "shared.tcss").read_text()
    assert ".board--status-locked" in (sheets / "board.tcss").read_text()


def test_keyring_tells_locked_values_without_decrypting():
    a, b = generate_key(), generate_key()
    value = Keyring.from_spec(a).encrypt("sk-ant-oat01-x", "alice")
    assert Keyring.from_spec(b).locked_by(value) == _kid(a)
    assert Keyring.from_spec(f"{b},{a}").locked_by(value) is None
    assert Keyring([]).locked_by(value) == _kid(a)
    assert Keyring([]).locked_by("sk-ant-oat01-plain") is None
