"""``claude-console usage`` as an operator runs it, and politeness counted at the emulator:
four processes and ten CLI calls inside one interval make exactly one usage request per user."""

from __future__ import annotations

import subprocess
import sys

import pytest


def politeness_run(run_cli, emulator, users: list[str]) -> None:
    """Four concurrent processes each asking every user twice, then ten CLI calls."""
    script = ("import asyncio, sys\n"
              "from console.service import AuthService\n"
              "async def main():\n"
              "    async with AuthService(face='test') as s:\n"
              "        for _ in range(2):\n"
              "            await asyncio.gather(*(s.usage(u, fresh=True) for u in sys.argv[1:]))\n"
              "asyncio.run(main())\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, *users], env=run_cli.env()) for _ in range(4)]
    for _ in range(10):
        assert run_cli("usage", "--user", users[0], "--fresh", "--json").code == 0
    assert all(p.wait(timeout=60) == 0 for p in procs)
    for _ in range(2):
        assert run_cli("usage", "--all", "--fresh").code == 0


def test_politeness_file_tier(run_cli, cli_login, emulator):
    users = ["ada", "bob", "cy"]
    for user in users:
        cli_login(user)
    politeness_run(run_cli, emulator, users)
    assert emulator.state.usage_counts() == {f"{u}@example.com": 1 for u in users}


@pytest.mark.postgres
def test_politeness_postgres(run_cli, cli_login, emulator, pg_env):
    users = ["ada", "bob"]
    for user in users:
        cli_login(user)
    politeness_run(run_cli, emulator, users)
    assert emulator.state.usage_counts() == {f"{u}@example.com": 1 for u in users}


def test_usage_cli_text_json_and_status_users_gain_plan_and_usage(run_cli, cli_login, emulator):
    emulator.state.configure(profile_shape="email",
                             usage_by_email={"ada@example.com": {"five_hour": 91.5, "seven_day": 40,
                                                                 "seven_day_opus": None, "odd_window": 2}})
    cli_login("ada")
    shown = run_cli("usage", "--user", "ada", "--json")
    assert shown.code == 0, shown.err
    model = shown.json()
    assert model["plan"] == "Max 20x"
    assert {w["label"]: w["utilization"] for w in model["windows"]} == {"5h": 91.5, "7d": 40.0, "odd_window": 2.0}
    text = run_cli("usage", "--user", "ada")
    assert "Max 20x" in text.out and "91.5%" in text.out and "(>= 80%)" in text.out and "odd_window" in text.out
    status = run_cli("status", "--user", "ada", "--json").json()
    assert status["plan"] == "Max 20x" and status["usage"]["windows"] == model["windows"]
    users = run_cli("users", "--json").json()
    assert users[0]["plan"] == "Max 20x" and users[0]["usage"]["windows"] == model["windows"]
    every = run_cli("usage", "--all", "--json").json()
    assert [m["user_id"] for m in every] == ["ada"]


def test_usage_of_a_user_not_logged_in_is_one_line(run_cli):
    result = run_cli("usage", "--user", "nobody")
    assert result.code != 0 and "not logged in" in result.err and "Traceback" not in result.err


def test_refresher_polls_due_users_once_per_interval(run_cli, cli_login, emulator):
    for user in ("ada", "bob"):
        cli_login(user)
    first = run_cli("refresher", "--once")
    assert first.code == 0 and "usage asked for 2 users" in first.out
    again = run_cli("refresher", "--once")
    assert "usage asked for 0 users" in again.out
    assert emulator.state.usage_counts() == {"ada@example.com": 1, "bob@example.com": 1}
    assert run_cli("usage", "--user", "bob", "--json").json()["fetched_by"].startswith("refresher")
