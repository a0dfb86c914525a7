"""Values inside records (issue 13): types and ranges checked where records come in; one bad
entry in the token file makes that user unreadable, never the whole store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from console.tokens import BadValue, check_values, parse_expires_at

from inputs_kit import run_main, store_digest

GOOD = {"access_token": "sk-ant-oat01-" + "a" * 40, "refresh_token": "sk-ant-ort01-" + "b" * 40,
        "expires_at": time.time() + 3600, "scopes": ["user:inference"]}

VALUE_ROWS = [
    ({"expires_at": float("nan")}, "expires_at is not a finite number"),
    ({"expires_at": float("inf")}, "expires_at is not a finite number"),
    ({"expires_at": 1e308}, "expires_at 1e+308 is not a time between the years 2000 and 2100"),
    ({"expires_at": 5.0}, "not a time between the years 2000 and 2100"),
    ({"expires_at": "soon"}, "expires_at is not a number"),
    ({"expires_at": True}, "expires_at is not a number"),
    ({"access_token": ""}, "access_token is missing"),
    ({"access_token": 5}, "access_token is missing or not text"),
    ({"access_token": "x" * 20000}, "access_token is longer than"),
    ({"access_token": "tok\x1b[2J"}, "access_token holds characters"),
    ({"refresh_token": ["x"]}, "refresh_token is not text"),
    ({"scopes": "user:inference"}, "scopes is not a list of strings"),
    ({"scopes": [1, 2]}, "scopes is not a list of strings"),
    ({"account_email": {"a": 1}}, "account_email is not text"),
    ({"refresh_count": -1}, "refresh_count is not a whole number"),
    ({"version": 1.5}, "version is not a whole number"),
    ({"needs_login": "yes"}, "needs_login is not true or false"),
    ({"last_used": float("nan")}, "last_used is not a finite number"),
]


@pytest.mark.parametrize("change,words", VALUE_ROWS, ids=[r[1][:30] for r in VALUE_ROWS])
def test_values_out_of_type_or_range_are_refused_with_the_field_named(change, words):
    with pytest.raises(BadValue, match=words.replace("(", r"\(").replace("+", r"\+")):
        check_values({**GOOD, **change})


def test_good_values_pass():
    check_values(GOOD)
    check_values({**GOOD, "expires_at": 0, "refresh_token": None, "last_used": None})


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-5", True])
def test_expiry_parsing_refuses_what_is_not_a_time(value):
    with pytest.raises(ValueError):
        parse_expires_at(value)


def test_expiry_parsing_takes_seconds_and_milliseconds():
    assert parse_expires_at(1_900_000_000) == 1_900_000_000
    assert parse_expires_at(1_900_000_000_000) == 1_900_000_000


def _plant(env, uid: str, entry) -> None:
    """A hand-edited token file: one user whose entry is bad."""
    path = Path(env["CLAUDE_TOKEN_FILE"])
    doc = json.loads(path.read_text())
    doc["users"][uid] = entry
    path.write_text(json.dumps(doc))  # json writes NaN and Infinity as Python reads them back


BAD_ENTRIES = [
    ({**GOOD, "expires_at": float("nan")}, "expires_at is not a finite number"),
    ({**GOOD, "expires_at": 1e308}, "between the years 2000 and 2100"),
    ({**GOOD, "scopes": 5}, "scopes is not a list of strings"),
    ({**GOOD, "access_token": 42}, "access_token is missing or not text"),
    ("not an object", "malformed"),
]


@pytest.mark.parametrize("entry,words", BAD_ENTRIES, ids=[r[1][:30] for r in BAD_ENTRIES])
def test_one_bad_entry_makes_that_user_unreadable_not_the_store(console_env, emulator, entry, words):

    assert run_main(["login", "--no-wait", "--no-browser", "--user", "alice"]).code == 0
    start = run_main(["login", "--no-browser", "--json", "--user", "alice"])
    approved = emulator.approve(json.loads(start.out)["authorization_url"], email="alice@example.com")
    assert run_main(["callback", approved["pasted"]]).code == 0
    _plant(console_env, "bob", entry)
    before = store_digest(console_env)

    listing = run_main(["users"])
    assert listing.code == 0, listing
    assert "alice" in listing.out and "bob" not in listing.out
    assert any("'bob'" in line and "unreadable" in line for line in listing.err.splitlines()), listing.err
    assert "claude-console login --user bob" in listing.err

    one = run_main(["status", "--user", "bob"])
    assert one.code == 3 and len(one.err_lines) == 1 and words in one.err_lines[0], one
    assert "Traceback" not in one.err
    assert run_main(["status", "--user", "alice"]).code == 0
    assert store_digest(console_env) == before


@pytest.mark.parametrize("variables,code,words", [
    ({"CLAUDE_EXPIRES_AT": "nan"}, 2, "CLAUDE_EXPIRES_AT"),
    ({"CLAUDE_EXPIRES_AT": "1e308"}, 2, "between the years 2000 and 2100"),
    ({"CLAUDE_EXPIRES_AT": "soon"}, 2, "is not a number of seconds"),
    ({"CLAUDE_ACCESS_TOKEN": "x" * 20000}, 2, "CLAUDE_ACCESS_TOKEN: is longer than"),
    ({"CLAUDE_REFRESH_TOKEN": "r\x1bx"}, 2, "CLAUDE_REFRESH_TOKEN: holds characters"),
])
def test_the_environment_tier_checks_its_values(console_env, monkeypatch, variables, code, words):
    monkeypatch.setenv("CLAUDE_ACCESS_TOKEN", "sk-ant-oat01-" + "e" * 40)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    before = store_digest(console_env)
    result = run_main(["status"])
    assert result.code == code and len(result.err_lines) == 1 and words in result.err_lines[0], result
    assert "\x1b" not in result.err
    assert store_digest(console_env) == before


@pytest.mark.parametrize("change,words", VALUE_ROWS, ids=[r[1][:30] for r in VALUE_ROWS])
def test_the_column_check_of_a_restore_finds_the_same_rows_and_words(change, words):
    from console.tokens import check_columns

    base = {**GOOD, "needs_login": False}
    rows = [base, {**base, **change}, base]
    names = sorted({k for row in rows for k in row})
    columns = {name: [row.get(name) for row in rows] for name in names}
    found = check_columns(columns, 3)
    assert list(found) == [1] and words.split(" (")[0].replace("\\", "") in found[1], found
    assert check_columns({name: [GOOD.get(name)] * 3 for name in GOOD}, 3) == {}
