"""The CLI as an operator uses it: real subprocesses, the emulator over HTTP, a private token file.

``run_cli`` checks on every run that no token, code or verifier is printed (``token`` alone
prints the access token), so each test here also proves that for the commands it runs.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import subprocess
import time

import pytest

from console.crypto import generate_key, key_id
from console.emulator.state import DEFAULT_CLIENT_ID, OAuthError as EmulatorOAuthError

from .helpers import SCRIPT, TOKEN_RE, Result, StoredTokens

pytestmark = pytest.mark.e2e


def _one_line(result) -> str:
    lines = result.err_lines
    assert len(lines) == 1, f"expected one error line, got:\n{result.err}"
    return lines[0]


def _url_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("http")]
    assert len(lines) == 1, output
    return lines[0]


# -- logging in -------------------------------------------------------------------------------

def test_login_accepts_all_three_paste_forms(run_cli, cli_login, emulator, tokens, console_env):
    started = run_cli("login", "--json", "--no-browser", "--user", "alice")
    assert started.code == 0
    start = started.json()
    assert start["user_id"] == "alice"
    assert start["authorization_url"].startswith(console_env["CLAUDE_OAUTH_AUTHORIZE_URL"] + "?")
    assert f"state={start['state']}" in start["authorization_url"]
    assert "code_challenge_method=S256" in start["authorization_url"]
    assert 590 < start["expires_at"] - time.time() <= 600

    # 1. CODE#STATE, as the hosted callback page shows it
    approved = emulator.approve(start["authorization_url"], email="alice@example.com")
    run_cli.secrets.add(approved["code"])
    done = run_cli("callback", approved["pasted"])
    assert done.code == 0, done.err
    assert "alice" in done.out and "alice@example.com" in done.out

    # 2. the full callback URL
    cli_login("bob", form="callback_url")

    # 3. a bare code: the newest pending login of that user (the human login output is parsed here)
    run_cli("login", "--json", "--no-browser", "--user", "carol")
    human = run_cli("login", "--no-browser", "--user", "carol")
    assert human.code == 0 and "claude-console callback" in human.out
    approved = emulator.approve(_url_line(human.out), email="carol@example.com")
    run_cli.secrets.add(approved["code"])
    done = run_cli("callback", approved["code"], "--user", "carol")
    assert done.code == 0, done.err
    assert "carol@example.com" in done.out

    users = run_cli("users", "--json")
    assert users.code == 0
    listed = {u["user_id"]: u for u in users.json()}
    assert set(listed) == {"alice", "bob", "carol"}
    for uid, user in listed.items():
        assert (user["account_email"], user["status"], user["source"]) == (f"{uid}@example.com", "active", "file")
    table = run_cli("users")
    assert table.code == 0
    for uid in listed:
        assert any(line.startswith(uid) and f"{uid}@example.com" in line for line in table.out.splitlines())

    # each user has its own token, and `token --user` prints exactly the stored one
    printed = {uid: run_cli("token", "--user", uid).out.strip() for uid in ("alice", "carol")}
    assert printed["alice"] == tokens.get("alice").access_token
    assert printed["carol"] == tokens.get("carol").access_token
    assert printed["alice"] != printed["carol"]
    assert emulator.stats()["exchange_ok"] == 3
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.path.parent.stat().st_mode) == 0o700


def test_default_user_comes_from_claude_console_user(run_cli, cli_login, tokens):
    env = {"CLAUDE_CONSOLE_USER": "erin"}
    start = cli_login(env=env)
    assert start["user_id"] == "erin"
    assert tokens.get("erin") is not None and tokens.get("default") is None

    as_erin = run_cli("status", "--json", env=env)
    assert as_erin.code == 0 and as_erin.json()["user_id"] == "erin"
    as_default = run_cli("status", "--json")
    assert as_default.code == 1 and as_default.json()["user_id"] == "default"
    assert run_cli("token", env=env).out == run_cli("token", "--user", "erin").out


def test_code_pasted_twice_is_refused_and_tokens_untouched(run_cli, cli_login, emulator, tokens):
    first = cli_login()
    before = tokens.bytes()

    again = run_cli("callback", first["pasted"])
    assert again.code != 0
    assert "no pending login matches" in _one_line(again)
    assert tokens.bytes() == before

    # With another login pending, the bare code goes to the provider, which refuses it.
    pending = run_cli("login", "--json", "--no-browser").json()
    again = run_cli("callback", first["code"])
    assert again.code != 0
    assert "invalid_grant" in _one_line(again)
    assert tokens.bytes() == before
    assert emulator.stats()["exchange_ok"] == 1

    # The refused paste left that login open: its own code still completes it.
    approved = emulator.approve(pending["authorization_url"], email="default@example.com")
    run_cli.secrets.add(approved["code"])
    assert run_cli("callback", approved["code"]).code == 0
    assert tokens.bytes() != before


def test_unknown_and_expired_states_are_refused(run_cli, emulator, tokens, tmp_path):
    unknown = run_cli("callback", "somecode#no-such-state")
    assert unknown.code != 0
    assert "no pending login matches that state" in _one_line(unknown)
    # Codes are base64url: one may start with '-' and must still be taken as the code.
    dashed = run_cli("callback", "-somecode#no-such-state", "--user", "default")
    assert dashed.code == 1 and "no pending login matches that state" in _one_line(dashed)

    config = tmp_path / "short.yaml"
    config.write_text("claude_oauth:\n  pending_ttl: 1\n")
    start = run_cli("--config", str(config), "login", "--json", "--no-browser").json()
    assert start["expires_at"] - time.time() <= 1
    approved = emulator.approve(start["authorization_url"])
    run_cli.secrets.add(approved["code"])
    time.sleep(max(0.0, start["expires_at"] - time.time()) + 0.1)
    late = run_cli("callback", approved["pasted"], "--config", str(config))
    assert late.code != 0
    assert "expired" in _one_line(late)
    assert not tokens.path.exists()
    assert emulator.stats()["exchange_requests"] == 0  # refused before reaching the provider


# -- status -------------------------------------------------------------------------------------

def test_status_fields_and_exit_codes(run_cli, cli_login, tokens):
    missing = run_cli("status", "--json")
    assert missing.code == 1
    report = missing.json()
    assert (report["user_id"], report["authenticated"], report["status"]) == ("default", False, "not_logged_in")
    human = run_cli("status")
    assert human.code == 1 and "claude-console login" in human.out

    cli_login(email="ops@example.com")
    report = run_cli("status", "--json")
    assert report.code == 0
    data = report.json()
    assert {k: data[k] for k in ("user_id", "authenticated", "needs_refresh", "status", "source",
                                 "account_email")} == {
        "user_id": "default", "authenticated": True, "needs_refresh": False, "status": "active",
        "source": "file", "account_email": "ops@example.com"}
    assert 28700 < data["expires_in"] <= 28800
    human = run_cli("status")
    assert human.code == 0
    assert "active" in human.out and "ops@example.com" in human.out and "source   file" in human.out

    # Inside the refresh buffer: still authenticated, needs a refresh.
    tokens.rewrite(expires_at=time.time() + 100)
    data = run_cli("status", "--json").json()
    assert (data["status"], data["authenticated"], data["needs_refresh"]) == ("expiring", True, True)

    # Expired with a refresh token: not authenticated now, but usable (exit 0).
    tokens.expire()
    expired = run_cli("status", "--json")
    data = expired.json()
    assert expired.code == 0
    assert (data["status"], data["authenticated"], data["needs_refresh"]) == ("expired_refreshable", False, True)
    assert data["expires_in"] < 0

    # Expired without a refresh token: only a login helps.
    tokens.rewrite(refresh_token=None)
    dead = run_cli("status", "--all", "--json")
    assert dead.code == 1
    assert [(r["user_id"], r["status"]) for r in dead.json()] == [("default", "expired")]

    # Bad usage: exit 2, one line.
    for args in (("status", "--all", "--user", "x"), ("status", "--bogus"), ("no-such-verb",)):
        wrong = run_cli(*args)
        assert wrong.code == 2, args
        assert _one_line(wrong).startswith("error:")


def test_bad_config_file_names_the_key(run_cli, tmp_path):
    cases = {
        "claude_oauth:\n  refresh_buffer: soon\n": "claude_oauth.refresh_buffer",
        "general_settings:\n  claude_oauth:\n    auto_refresh: maybe\n": "claude_oauth.auto_refresh",
        "claude_oauth:\n  refresh_style: sideways\n": "claude_oauth.refresh_style",
        "claude_oauth: [unclosed\n": "at line ",
    }
    for n, (text, named) in enumerate(cases.items()):
        path = tmp_path / f"bad{n}.yaml"
        path.write_text(text)
        result = run_cli("status", "--config", str(path))
        assert result.code == 2, text
        line = _one_line(result)
        assert named in line, line
        assert str(path) in line or "refresh_style" in named, line  # the parse errors name the file too
    missing = run_cli("--config", str(tmp_path / "nope.yaml"), "status")
    assert missing.code == 2 and "does not exist" in _one_line(missing)
    via_env = run_cli("status", env={"CLAUDE_REFRESH_BUFFER": "later"})
    assert via_env.code == 2 and "CLAUDE_REFRESH_BUFFER" in _one_line(via_env)


SEED_CONFIG = """\
model_list:
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
      use_claude_oauth: true

general_settings:
  master_key: ${LITELLM_MASTER_KEY}
  database_url: ${DATABASE_URL}

claude_oauth:
  enabled: true
  token_file: ${SEED_HOME}/claude_tokens.json
  encryption_key: ${CLAUDE_TOKEN_ENCRYPTION_KEY}
  auto_refresh: true
  refresh_buffer: 900
  use_database: false
"""


def test_seed_config_yaml_loads_as_it_stands(run_cli, cli_login, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(SEED_CONFIG)
    key = generate_key()
    seed_home = tmp_path / "seed-home"
    env = {"CLAUDE_TOKEN_FILE": None, "SEED_HOME": str(seed_home), "CLAUDE_TOKEN_ENCRYPTION_KEY": key,
           "LITELLM_MASTER_KEY": "sk-1234"}
    # --config before the verb, then CONSOLE_CONFIG: both must reach the same file.
    cli_login(env=env, args=("--config", str(config)))
    seed_file = seed_home / "claude_tokens.json"
    seed_tokens = StoredTokens(seed_file)
    raw = seed_file.read_text()
    kid = key_id(base64.urlsafe_b64decode(key))
    assert f"enc:v1:{kid}:" in raw
    assert not TOKEN_RE.search(raw)  # encrypted at rest

    env["CONSOLE_CONFIG"] = str(config)
    assert run_cli("status", "--json", env=env).json()["status"] == "active"
    seed_tokens.rewrite(key=key, expires_at=time.time() + 600)  # inside the 900 s buffer from the file
    assert run_cli("status", "--json", env=env).json()["status"] == "expiring"
    health = run_cli("health", env=env)
    assert health.code == 0
    assert str(seed_file) in health.out
    assert any(line.split()[:2] == ["key", "up"] and kid in line for line in health.out.splitlines()), health.out


# -- token, refresh, rotation ---------------------------------------------------------------------

def test_token_refreshes_an_expired_token_with_rotation(run_cli, cli_login, emulator, tokens):
    cli_login()
    first = tokens.get()
    shown = run_cli("token")
    assert shown.code == 0 and shown.out == first.access_token + "\n" and shown.err == ""
    assert emulator.stats()["refresh_requests"] == 0

    tokens.expire()
    refreshed = run_cli("token")
    assert refreshed.code == 0
    after = tokens.get()
    assert refreshed.out == after.access_token + "\n"
    assert after.access_token != first.access_token
    assert after.refresh_token != first.refresh_token  # rotated, and saved
    assert after.refresh_count == first.refresh_count + 1
    assert run_cli("token").out == refreshed.out  # valid now: no second refresh
    stats = emulator.stats()
    assert (stats["refresh_requests"], stats["refresh_ok"], stats["refresh_replays"]) == (1, 1, 0)
    data = run_cli("status", "--json").json()
    assert (data["status"], data["refresh_count"]) == ("active", 1)

    # The old refresh token died at the provider when it rotated.
    with pytest.raises(EmulatorOAuthError) as replay:
        emulator.state.refresh(first.refresh_token, DEFAULT_CLIENT_ID)
    assert replay.value.error == "invalid_grant"

    # That replay revoked the whole family (RFC 9700): the console must say "log in again".
    rejected = run_cli("refresh")
    assert rejected.code == 1
    assert "claude-console login" in rejected.err and "invalid_grant" in rejected.err
    assert tokens.get().needs_login
    status = run_cli("status", "--json")
    assert status.code == 1 and status.json()["status"] == "needs_login"
    assert run_cli("token").code == 1

    trail = run_cli("audit", "--json")
    assert trail.code == 0
    assert [(e["action"], e["ok"]) for e in trail.json()] == [
        ("refresh_failed", False), ("refresh", True), ("login", True)]
    assert all(e["actor"].startswith("cli:") for e in trail.json())
    human = run_cli("audit")
    assert human.code == 0 and "refresh_failed" in human.out and "FAILED" in human.out


def test_refresh_one_user_and_all_users(run_cli, cli_login, emulator, tokens):
    cli_login("alice")
    cli_login("bob")
    alice, bob = tokens.get("alice"), tokens.get("bob")

    one = run_cli("refresh", "--user", "alice")
    assert one.code == 0 and "alice: refreshed" in one.out
    assert tokens.get("alice").refresh_token != alice.refresh_token
    assert tokens.get("bob").refresh_token == bob.refresh_token

    every = run_cli("refresh", "--all")
    assert every.code == 0 and "alice: refreshed" in every.out and "bob: refreshed" in every.out
    assert tokens.get("alice").refresh_count == 2 and tokens.get("bob").refresh_count == 1
    assert emulator.stats()["refresh_requests"] == 3

    nobody = run_cli("refresh", "--user", "nobody")
    assert nobody.code == 1 and "not logged in" in nobody.err


def test_four_processes_share_one_refresh(run_cli, cli_login, emulator, tokens):
    cli_login()
    old = tokens.expire()
    emulator.state.configure(latency_ms=300)  # the refresh is slow, so the four overlap
    env = run_cli.env()
    procs = [subprocess.Popen([str(SCRIPT), "token"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.returncode, *outputs) for p, outputs in ((p, p.communicate(timeout=60)) for p in procs)]
    for code, out, err in results:
        run_cli.check_no_leak(("token",), Result(code, out, err))
        assert code == 0, err
    printed = {out for _, out, _ in results}
    assert len(printed) == 1
    new = tokens.get()
    assert printed == {new.access_token + "\n"} and new.access_token != old.access_token
    stats = emulator.stats()
    assert (stats["refresh_requests"], stats["refresh_replays"]) == (1, 0)
    assert new.refresh_count == old.refresh_count + 1


def test_rate_limited_refresh_backs_off_then_succeeds(run_cli, cli_login, emulator, tokens):
    cli_login()
    old = tokens.expire()
    emulator.state.add_fault("token", 429, count=1, retry_after=0.1)
    result = run_cli("token")
    assert result.code == 0, result.err
    assert result.out == tokens.get().access_token + "\n" != old.access_token + "\n"
    stats = emulator.stats()
    assert (stats["refresh_requests"], stats["faults_served"], stats["refresh_ok"]) == (2, 1, 1)


def test_server_errors_exhausted_leave_tokens_untouched(run_cli, cli_login, emulator, tokens):
    cli_login()
    old = tokens.expire()
    emulator.state.add_fault("refresh", 503, count=50)
    failed = run_cli("token")
    assert failed.code != 0
    line = _one_line(failed)
    assert "503" in line and "unchanged" in line
    kept = tokens.get()
    assert (kept.access_token, kept.refresh_token, kept.expires_at) == \
        (old.access_token, old.refresh_token, old.expires_at)
    assert emulator.stats()["refresh_requests"] == 4  # max_retries 3, then give up
    status = run_cli("status", "--json")
    assert status.code == 0  # still refreshable: nothing was lost
    assert "503" in status.json()["last_refresh_error"]

    emulator.state.clear_faults()
    recovered = run_cli("token")
    assert recovered.code == 0 and recovered.out == tokens.get().access_token + "\n"


# -- logout ---------------------------------------------------------------------------------------

def test_logout_needs_confirmation_then_removes(run_cli, cli_login, tokens):
    for user in ("default", "alice", "bob"):
        cli_login(user)
    before = tokens.bytes()

    refused = run_cli("logout", input="")  # stdin is a pipe, not a terminal
    assert refused.code == 2 and "--yes" in _one_line(refused)
    assert tokens.bytes() == before

    one = run_cli("logout", "--user", "alice", "--yes")
    assert one.code == 0 and "alice: logged out" in one.out
    assert tokens.get("alice") is None and tokens.get("bob") is not None
    assert run_cli("status", "--user", "alice").code == 1

    refused = run_cli("logout", "--all", input="y\n")
    assert refused.code == 2 and tokens.get("bob") is not None
    everyone = run_cli("logout", "--all", "--yes")
    assert everyone.code == 0 and "bob: logged out" in everyone.out and "default: logged out" in everyone.out
    assert run_cli("users", "--json").json() == []
    logouts = [e["user_id"] for e in run_cli("audit", "--json").json() if e["action"] == "logout"]
    assert sorted(logouts) == ["alice", "bob", "default"]


# -- the environment tier -----------------------------------------------------------------------

def test_env_tier_is_read_only_user_default(run_cli, cli_login, tokens, tmp_path):
    access = "sk-ant-oat01-" + secrets.token_urlsafe(48)
    now = time.time()
    env = {"CLAUDE_ACCESS_TOKEN": access, "CLAUDE_REFRESH_TOKEN": "sk-ant-ort01-" + secrets.token_urlsafe(48)}
    for expires_at in (str(int(now + 3600)), str(int((now + 3600) * 1000))):  # seconds, milliseconds
        status = run_cli("status", "--json", env={**env, "CLAUDE_EXPIRES_AT": expires_at})
        assert status.code == 0, status.err
        data = status.json()
        assert (data["user_id"], data["source"], data["status"]) == ("default", "env", "active")
        assert 3500 < data["expires_in"] <= 3600, expires_at
    env["CLAUDE_EXPIRES_AT"] = str(int(now + 3600))
    assert run_cli("token", env=env).out == access + "\n"
    assert run_cli("status", "--json", "--user", "other", env=env).code == 1
    assert [(u["user_id"], u["source"]) for u in run_cli("users", "--json", env=env).json()] == [("default", "env")]
    logout = run_cli("logout", "--yes", env=env)
    assert logout.code != 0 and "CLAUDE_ACCESS_TOKEN" in _one_line(logout)
    assert not tokens.path.exists()  # read-only: nothing was written

    # An expired env token with a live refresh token: the refresh lands in the file tier.
    elsewhere = tmp_path / "elsewhere" / "tokens.json"
    cli_login(env={"CLAUDE_TOKEN_FILE": str(elsewhere)})
    real = tokens.get(path=elsewhere)
    env = {"CLAUDE_ACCESS_TOKEN": real.access_token, "CLAUDE_REFRESH_TOKEN": real.refresh_token,
           "CLAUDE_EXPIRES_AT": str(int((now - 60) * 1000))}
    fresh = run_cli("token", env=env)
    assert fresh.code == 0, fresh.err
    saved = tokens.get()
    assert fresh.out == saved.access_token + "\n" != real.access_token + "\n"
    assert saved.refresh_token != real.refresh_token
    assert run_cli("status", "--json", env=env).json()["source"] == "file"  # the stored token wins now


# -- storage that cannot be used ----------------------------------------------------------------

def test_loose_permissions_are_refused_with_the_fix(run_cli, cli_login, tokens):
    cli_login()
    os.chmod(tokens.path, 0o644)
    before = tokens.bytes()
    for verb in ("status", "token", "refresh"):
        result = run_cli(verb)
        assert result.code == 3, verb
        assert f"chmod 600 {tokens.path}" in _one_line(result)
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o644 and tokens.bytes() == before
    os.chmod(tokens.path, 0o600)
    assert run_cli("status").code == 0


def test_corrupt_token_file_is_reported_and_left_alone(run_cli, emulator, tokens):
    tokens.path.parent.mkdir(mode=0o700, parents=True)
    tokens.path.write_bytes(b'{"format": "claude-console/1", "users": {"default": {"access_tok')
    os.chmod(tokens.path, 0o600)
    before = tokens.bytes()
    for args in (("status",), ("token",), ("users",), ("refresh", "--all"), ("logout", "--yes")):
        result = run_cli(*args)
        assert result.code == 3, args
        assert "not valid JSON" in _one_line(result) and str(tokens.path) in result.err
    health = run_cli("health")
    assert health.code == 3 and "down" in health.out
    # A login finishing onto a corrupt file must not overwrite it either.
    start = run_cli("login", "--json", "--no-browser").json()
    approved = emulator.approve(start["authorization_url"])
    run_cli.secrets.add(approved["code"])
    assert run_cli("callback", approved["pasted"]).code == 3
    assert tokens.bytes() == before


def test_wrong_encryption_key_names_the_key_id(run_cli, cli_login, emulator, tokens):
    key_a, key_b = generate_key(), generate_key()
    kid_a = key_id(base64.urlsafe_b64decode(key_a))
    cli_login(env={"CLAUDE_TOKEN_ENCRYPTION_KEY": key_a})
    before = tokens.bytes()
    assert f"enc:v1:{kid_a}:".encode() in before

    wrong = {"CLAUDE_TOKEN_ENCRYPTION_KEY": key_b}
    for verb in ("status", "token", "refresh"):
        result = run_cli(verb, env=wrong)
        assert result.code == 3, verb
        line = _one_line(result)
        assert kid_a in line and "CLAUDE_TOKEN_ENCRYPTION_KEY" in line
    none = run_cli("status")
    assert none.code == 3 and kid_a in _one_line(none) and "no key is configured" in none.err
    assert tokens.bytes() == before
    assert emulator.stats()["refresh_requests"] == 0

    # A keyring with the new key first and the old one after reads it (rotation).
    assert run_cli("status", env={"CLAUDE_TOKEN_ENCRYPTION_KEY": f"{key_b},{key_a}"}).code == 0


# -- logging, the program itself --------------------------------------------------------------------

def test_verbose_output_redacts_every_secret(run_cli, emulator, tokens):
    start = run_cli("login", "--json", "--no-browser", "--verbose").json()
    pending = [json.loads(p.read_text()) for p in (tokens.path.parent / "claude_tokens.d" / "pending").glob("*.json")]
    assert len(pending) == 1 and pending[0]["state"] == start["state"]
    run_cli.secrets.add(pending[0]["verifier"])
    approved = emulator.approve(start["authorization_url"])
    run_cli.secrets.add(approved["code"])

    done = run_cli("callback", approved["pasted"], "--verbose")
    assert done.code == 0
    assert "DEBUG" in done.err  # logging was on, and (checked by run_cli) printed no secret
    first = tokens.get()
    run_cli.secrets.update({first.access_token, first.refresh_token})

    tokens.expire()
    refreshed = run_cli("--verbose", "refresh")
    assert refreshed.code == 0 and "DEBUG" in refreshed.err
    shown = run_cli("token", env={"LITELLM_LOG_LEVEL": "DEBUG"})
    assert shown.code == 0 and shown.out == tokens.get().access_token + "\n"
    assert run_cli("status", "--verbose").code == 0


def test_module_and_script_are_the_same_program(run_cli):
    bare = run_cli()
    # No verb and no terminal: one line saying what to do, exit 2 (issue 13).
    assert bare.code == 2 and "login" in bare.err and "token" in bare.err and bare.out == ""
    assert len(bare.err.strip().splitlines()) == 1
    env = run_cli.env()
    for args in ((), ("--help",), ("--version",), ("status", "--json")):
        script = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)
        module = run_cli(*args)
        assert (script.returncode, script.stdout) == (module.code, module.out), args


def test_qr_style_flag_on_the_console_the_login_and_the_sandbox():
    from console.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--qr-style", "sextant"]).qr_style == "sextant"
    assert parser.parse_args(["--qr-style", "sextant", "login"]).qr_style == "sextant"
    assert parser.parse_args(["login", "--qr-style", "half"]).qr_style == "half"
    assert parser.parse_args(["sandbox", "--qr-style", "auto"]).qr_style == "auto"
    assert parser.parse_args(["login"]).qr_style is None
    with pytest.raises(SystemExit):
        parser.parse_args(["login", "--qr-style", "braille"])


def test_terminal_qr_in_sextants_is_a_third_shorter():
    from console.qr import terminal_qr

    url = "https://claude.com/cai/oauth/authorize?" + "x" * 360
    half, sextant = terminal_qr(url, color=False), terminal_qr(url, color=False, style="sextant")
    assert len(sextant) * 3 <= len(half) * 2 + 3 and any("\U0001fb00" <= ch <= "\U0001fb3b"
                                                            for line in sextant for ch in line)
