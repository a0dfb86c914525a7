"""`login --loopback`: a one-shot listener on 127.0.0.1 takes the browser's redirect, checks the
state, finishes the login, answers with a plain page and closes. Driven end to end: the CLI in a
subprocess, the emulator approving, the "browser" an HTTP GET to the redirect."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .helpers import TOKEN_RE

pytestmark = pytest.mark.e2e


def start_login(run_cli, *args: str) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([sys.executable, "-m", "console", "login", "--loopback", "--no-browser", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=run_cli.env())
    url = None
    for _ in range(20):
        line = proc.stdout.readline()
        if line.startswith("http"):
            url = line.strip()
        if line.startswith("Waiting for the browser on http://localhost:"):
            port = int(line.split("http://localhost:")[1].split("/")[0])
            assert url is not None
            return proc, url, port
    proc.kill()
    raise AssertionError(f"no URL and listener line; stderr:\n{proc.stderr.read()}")


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err and not TOKEN_RE.search(out + err), err
    return proc.returncode, out, err


def browser(url: str) -> httpx.Response:
    return httpx.get(url.replace("//localhost:", "//127.0.0.1:"), timeout=10)


def test_loopback_login_end_to_end(run_cli, emulator, tokens):
    proc, url, port = start_login(run_cli, "--user", "alice")
    try:
        assert parse_qs(urlsplit(url).query)["redirect_uri"] == [f"http://localhost:{port}/callback"]
        approved = emulator.approve(url, email="alice@example.com")
        assert approved["callback_url"].startswith(f"http://localhost:{port}/callback?")
        # a request with another state is refused and the listener keeps waiting
        forged = browser(f"http://localhost:{port}/callback?code=x&state=forged")
        assert forged.status_code == 400 and "does not match" in forged.text
        assert browser(f"http://localhost:{port}/favicon.ico").status_code == 404
        page = browser(approved["callback_url"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Logged in user alice as alice@example.com" in page.text and "sk-ant" not in page.text
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    assert "Logged in user 'alice' as alice@example.com" in out
    assert tokens.get("alice").account_email == "alice@example.com"
    with pytest.raises(httpx.ConnectError):  # one-shot: the listener is gone
        browser(f"http://localhost:{port}/callback")


def test_loopback_login_finished_by_a_paste_elsewhere(run_cli, emulator, tokens):
    proc, url, port = start_login(run_cli, "--user", "bob")
    try:
        approved = emulator.approve(url, email="bob@example.com")
        run_cli.secrets.add(approved["code"])
        pasted = run_cli("callback", approved["pasted"])
        assert pasted.code == 0, pasted.err
    finally:
        code, out, err = finish(proc)
    assert code == 0 and "finished elsewhere" in out
    assert tokens.get("bob").account_email == "bob@example.com"


def test_loopback_login_expires(run_cli, emulator, tmp_path, tokens):
    config = tmp_path / "config.yaml"
    config.write_text("claude_oauth:\n  pending_ttl: 1\n")
    proc, url, port = start_login(run_cli, "--user", "carol", "--config", str(config))
    code, out, err = finish(proc)
    assert code == 1
    assert [line for line in err.splitlines() if not line.startswith("warning:")] == [
        "error: the login for user 'carol' expired (logins must finish within 1 seconds); run: "
        "claude-console login --user carol --loopback"]
    assert tokens.get("carol") is None


def test_loopback_options_are_checked(run_cli):
    result = run_cli("login", "--port", "8123")
    assert result.code == 2 and result.err_lines == [
        "error: --port is for --loopback logins; add --loopback, or leave out --port"]
    result = run_cli("login", "--loopback", "--redirect-uri", "http://localhost:1/callback")
    assert result.code == 2 and "sets the redirect URI itself" in result.err
