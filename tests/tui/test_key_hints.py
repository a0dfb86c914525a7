"""Inside the console, a fix-it hint names the key, not the CLI command."""

from __future__ import annotations

from console.errors import NeedsLogin
from console.ui.hints import BOARD, DETAIL, LOGIN, with_keys
from console.service import login_hint


def test_each_screen_names_its_own_key():
    message = str(NeedsLogin("user 'ann' must log in again", hint=login_hint("ann")))
    assert "claude-console" in message
    assert with_keys(message, BOARD) == "user 'ann' must log in again; press l to log the user in again"
    assert with_keys(message, DETAIL).endswith("; press l to log in again")
    assert with_keys(message, LOGIN).endswith("; press ctrl+r to start over with a new URL")


def test_hints_a_screen_has_no_key_for_are_left_as_they_are():
    text = "the table is missing; run claude-console migrate as the owner of the tables"
    assert with_keys(text, BOARD) == text
