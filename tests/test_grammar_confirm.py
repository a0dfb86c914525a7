"""Messages read as sentences (issue 13): counts with the right noun, durations under a minute
in seconds; declining a confirmation exits 1 and changes nothing."""

from __future__ import annotations

import json

import pytest

from console.tokens import count_text, format_span

from inputs_kit import run_main, store_digest


@pytest.mark.parametrize("n,noun,text", [
    (1, "user", "1 user"), (3, "user", "3 users"), (0, "user", "0 users"), (1, "batch", "1 batch"),
    (2, "batch", "2 batches"), (1, "row", "1 row"), (5, "migration", "5 migrations"),
    (1, "pending login", "1 pending login"), (2, "pending login", "2 pending logins"),
])
def test_counts_carry_the_right_noun(n, noun, text):
    assert count_text(n, noun) == text


@pytest.mark.parametrize("seconds,text", [(45, "45 seconds"), (1, "1 second"), (59.6, "1 minute"),
                                          (600, "10 minutes"), (90, "1 minute 30 seconds")])
def test_durations_under_a_minute_are_in_seconds(seconds, text):
    assert format_span(seconds) == text


def _login(emulator, user: str) -> None:
    start = run_main(["login", "--no-browser", "--json", "--user", user])
    approved = emulator.approve(json.loads(start.out)["authorization_url"], email=f"{user}@example.com")
    assert run_main(["callback", approved["pasted"]]).code == 0


@pytest.mark.parametrize("argv,answer", [
    (["logout", "--user", "alice"], "n\n"),
    (["logout", "--all"], "\n"),
    (["logout", "--all"], "nope\n"),
])
def test_declining_a_confirmation_exits_1_and_changes_nothing(console_env, emulator, monkeypatch, argv, answer):
    _login(emulator, "alice")
    before = store_digest(console_env)
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or answer.rstrip("\n"))
    monkeypatch.setattr("console.cli.accounts.isatty", lambda stream: True)
    result = run_main(argv)
    assert result.code == 1 and "Nothing was changed." in result.out, result
    assert store_digest(console_env) == before
    asked = "Log out 1 user (alice)?" if argv[1] == "--all" else "Log out user 'alice'?"
    assert prompts and prompts[0].startswith(asked), prompts
