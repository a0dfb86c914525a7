"""User ids: one rule, one resolver, one way of showing them (issue 13), on every face."""

from __future__ import annotations

import asyncio

import pytest

from console.errors import UsageError
from console.service import AuthService, login_hint
from console.config import load_settings
from console.users import (USER_ID_MAX, check_user_id, fix_command, markup_safe, resolve_user, shown,
                           user_id_problem)

from inputs_kit import run_main, store_digest


@pytest.mark.parametrize("value,words", [
    ("", "is empty"),
    ("a" * (USER_ID_MAX + 1), "257 characters long; the limit is 256"),
    ("a\x1b[2Jb", "control characters"),
    ("tab\there", "control characters"),
    ("line\nforged", "control characters"),
    ("del\x7f", "control characters"),
    ("c1\x85x", "control characters"),
    ("csi\x9b2J", "control characters"),
    ("bad\udcffutf8", "not valid UTF-8"),
    (None, "is not text"),
    (42, "is not text"),
])
def test_the_rule_refuses(value, words):
    assert words in user_id_problem(value)
    with pytest.raises(UsageError) as caught:
        check_user_id(value)
    line = str(caught.value)
    assert words in line and "\n" not in line and "\x1b" not in line and "\x9b" not in line
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ["default", "alice@example.com", "a" * USER_ID_MAX, "名前", "x;rm -rf /",
                                   "a[/]b", "[bold]x[/bold]", "it's", "-dash"])
def test_the_rule_accepts(value):
    assert check_user_id(value) == value


def test_resolve_picks_the_default_only_for_none():
    assert resolve_user(None, "fallback") == "fallback"
    assert resolve_user("alice", "fallback") == "alice"
    with pytest.raises(UsageError, match="is empty"):
        resolve_user("", "fallback")


def test_shown_escapes_and_cuts():
    assert shown("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert shown("x\ny") == "x\\x0ay"
    assert shown("\x9b") == "\\x9b"
    assert shown("bad\udcff") == "bad\\udcff"
    assert shown("a" * 300, 20) == "a" * 19 + "…"
    # Unicode that breaks or reorders a line: separators, bidirectional overrides.
    assert shown("x\u2028y\u2029z") == "x\\u2028y\\u2029z"
    assert shown("admin\u202egnp.exe") == "admin\\u202egnp.exe"
    assert markup_safe("a[/]b") == "a\\[/]b"


@pytest.mark.parametrize("uid,expected", [
    ("alice", "claude-console login --user alice"),
    ("x;rm -rf /", "claude-console login --user 'x;rm -rf /'"),
    ("it's", "claude-console login --user 'it'\"'\"'s'"),
    ("$(reboot)", "claude-console login --user '$(reboot)'"),
])
def test_fix_commands_are_shell_quoted(uid, expected):
    assert fix_command("login", uid) == expected
    assert login_hint(uid) == f"run: {expected}"


async def test_the_service_and_sdk_use_the_rule(settings):
    service = AuthService(settings)
    try:
        assert service.user(None) == "default"
        for bad in ("", "a\x1bb", "a" * 300):
            with pytest.raises(UsageError):
                await service.get_access_token(bad)
            with pytest.raises(UsageError):
                await service.start_login(bad)
            with pytest.raises(UsageError):
                await service.logout(bad)
            with pytest.raises(UsageError):
                await service.complete_login("CODE#STATE", bad)
    finally:
        await service.aclose()


@pytest.mark.parametrize("value,words", [("a\nb", "control characters"), ("x" * 300, "300 characters")])
def test_a_bad_default_user_is_a_configuration_error(value, words):
    from console.errors import ConfigError

    with pytest.raises(ConfigError, match=words):
        load_settings(env={"CLAUDE_CONSOLE_USER": value})


# -- the CLI: one table, on the file tier and on PostgreSQL ------------------------------------

LONG = "x" * 300
CLI_ROWS = [
    # argv, exit code, words on stderr
    (["status", "--user", ""], 2, "user id is empty"),
    (["status", "--user", "a\x1b[2Jb"], 2, "contains control characters"),
    (["logout", "--yes", "--user", LONG], 2, "300 characters long; the limit is 256"),
    (["logout", "--all", "--user", "x"], 2, "not allowed with argument"),
    (["login", "--no-wait", "--no-browser", "--user", "a\x85b"], 2, "contains control characters"),
    (["refresh", "--user", "del\x7f"], 2, "contains control characters"),
    (["token", "--user", ""], 2, "user id is empty"),
    (["callback", "CODE#STATE", "--user", ""], 2, "user id is empty"),
    (["audit", "--user", "a\x00b"], 2, "contains control characters"),
    (["backup", "out.bak", "--user", "ok", ""], 2, "user id is empty"),
    (["restore", "in.bak", "--user", "\x1b]0;x\x07"], 2, "contains control characters"),
    (["import", "env", "--user", "bad\udcffutf8"], 2, "not valid UTF-8"),
    (["export", "--user", "", "out.json"], 2, "user id is empty"),
]


@pytest.fixture(params=["file", "postgres"])
def tier_env(request, console_env):
    """The CLI's environment on the file tier or PostgreSQL, with one user logged in."""
    env = dict(console_env)
    if request.param == "postgres":
        env = dict(request.getfixturevalue("pg_env"))
    emulator = request.getfixturevalue("emulator")

    async def login() -> None:
        service = AuthService(load_settings())
        try:
            start = await service.start_login("alice")
            approved = emulator.approve(start.authorization_url, email="alice@example.com")
            await service.complete_login(approved["pasted"])
        finally:
            await service.aclose()

    asyncio.run(login())
    return env


@pytest.mark.parametrize("argv,code,words", CLI_ROWS, ids=[" ".join(r[0])[:40] for r in CLI_ROWS])
def test_cli_refuses_bad_user_ids_in_one_line(tier_env, argv, code, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = store_digest(tier_env)
    result = run_main(argv)
    assert result.code == code, result
    assert len(result.err_lines) == 1 and words in result.err_lines[0], result.err
    assert "Traceback" not in result.err and "\x1b" not in result.err and "\x85" not in result.err
    assert result.out == ""
    assert store_digest(tier_env) == before


def test_hints_are_quoted_and_ids_escaped(tier_env):
    result = run_main(["status", "--user", "x;rm -rf /"])
    assert result.code == 1
    assert result.out.strip() == "x;rm -rf /: not logged in. Run: claude-console login --user 'x;rm -rf /'"


def test_default_user_from_the_environment_is_checked(tier_env, monkeypatch):
    monkeypatch.setenv("CLAUDE_CONSOLE_USER", "a\x1b[2Jb")
    before = store_digest(tier_env)
    result = run_main(["status"])
    assert result.code == 2 and "control characters" in result.err and "\x1b" not in result.err
    assert store_digest(tier_env) == before


def test_log_lines_escape_control_characters():
    import io
    import logging

    from console.logs import setup_logging

    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    logging.getLogger("console.test").warning("user %s failed", "evil\x1b[2J\x9b")
    line = stream.getvalue()
    assert "evil\\x1b[2J\\x9b" in line and "\x1b" not in line and "\x9b" not in line
