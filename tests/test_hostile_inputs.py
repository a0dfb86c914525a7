"""Hostile files and requests (issue 13): codes off the command line, the API's peer address,
private folders, provider error text redacted before it is stored."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from console.api.serve import proxy_options
from console.errors import OAuthError

from inputs_kit import run_main, store_digest


def _start(emulator, user: str = "alice"):
    start = run_main(["login", "--no-browser", "--json", "--user", user])
    assert start.code == 0, start
    return emulator.approve(json.loads(start.out)["authorization_url"], email=f"{user}@example.com")


def test_callback_reads_the_code_from_standard_input(console_env, emulator):
    approved = _start(emulator)
    result = run_main(["callback", "-"], stdin=approved["pasted"] + "\n")
    assert result.code == 0 and "Logged in user 'alice'" in result.out, result
    assert approved["pasted"] not in result.out + result.err


@pytest.mark.parametrize("argv,stdin,code,words", [
    (["callback"], "", 2, "no code was given"),
    (["callback", "-"], "", 1, "nothing was pasted"),
    (["callback", "-"], "x" * 9000, 1, "the pasted text is not a code"),
    (["callback", "-"], "co\x1bde#state\n", 1, "the pasted text is not a code"),
    (["callback", "bad\udcffcode"], "", 1, "the pasted text is not a code"),
])
def test_bad_pastes_are_one_line(console_env, argv, stdin, code, words):
    before = store_digest(console_env)
    result = run_main(argv, stdin=stdin)
    assert result.code == code and len(result.err_lines) == 1 and words in result.err_lines[0], result
    assert "\x1b" not in result.err
    assert store_digest(console_env) == before


def test_forwarded_headers_are_trusted_only_from_named_proxies():
    assert proxy_options({}) == {"proxy_headers": False}
    assert proxy_options({"FORWARDED_ALLOW_IPS": "10.0.0.1"}) == {"proxy_headers": True,
                                                                 "forwarded_allow_ips": "10.0.0.1"}


def test_every_folder_the_store_makes_is_private(console_env, emulator):
    approved = _start(emulator)
    assert run_main(["callback", approved["pasted"]]).code == 0
    root = Path(console_env["CLAUDE_TOKEN_FILE"]).parent
    folders = [root, *[p for p in root.rglob("*") if p.is_dir()]]
    assert any(p.name == "claude_tokens.d" for p in folders)
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_provider_error_text_is_redacted_before_it_is_stored(service, login):
    record = await login(service, "alice")
    secret = "sk-ant-ort01-" + "S" * 40
    await service._refresh_failed("alice", record, OAuthError(f"HTTP 400: {{\"refresh_token\": \"{secret}\"}}"))
    stored = await service.get_record("alice")
    assert stored.last_refresh_error and secret not in stored.last_refresh_error
    assert "***" in stored.last_refresh_error
