"""Drive ``claude-console`` in subprocesses, as an operator would, against the emulator.

Every run goes through ``run_cli`` (``helpers.Cli``), which also checks the one promise that
holds for every command: no token (nor a code or a verifier the test registered) is ever
printed, except the access token that ``token`` prints alone on stdout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Cli, StoredTokens


@pytest.fixture
def run_cli(console_env) -> Cli:
    return Cli()


@pytest.fixture
def token_file(console_env) -> Path:
    return Path(console_env["CLAUDE_TOKEN_FILE"])


@pytest.fixture
def cli_login(run_cli, emulator):
    """``cli_login(user=None, email=None, env=None, form="pasted")``: login --json, approve, callback."""
    def do(user: str | None = None, email: str | None = None, env=None, form: str = "pasted",
           args: tuple[str, ...] = ()) -> dict:
        who = ("--user", user) if user else ()
        started = run_cli(*args, "login", "--json", "--no-browser", *who, env=env)
        assert started.code == 0, started.err
        start = started.json()
        approved = emulator.approve(start["authorization_url"],
                                    email=email or f"{start['user_id']}@example.com")
        run_cli.secrets.add(approved["code"])
        done = run_cli(*args, "callback", approved[form], *who, env=env)
        assert done.code == 0, done.err
        return {**start, **approved, "result": done}

    return do


@pytest.fixture
def tokens(token_file) -> StoredTokens:
    return StoredTokens(token_file)
