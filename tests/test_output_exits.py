"""Output and exit codes (issue 13): closed pipes, no terminal, limits, degraded caches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inputs_kit import run_main, store_digest


def _many_users(env, n: int) -> None:
    path = Path(env["CLAUDE_TOKEN_FILE"])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    users = {f"user-{i:05d}": {"access_token": f"sk-ant-oat01-{'a' * 40}{i:05d}", "expires_at": time.time() + 3600,
                               "version": 1} for i in range(n)}
    path.write_text(json.dumps({"format": "claude-console/1", "users": users}))
    os.chmod(path, 0o600)


def test_a_closed_pipe_exits_quietly(console_env):
    _many_users(console_env, 3000)  # far more than a pipe buffer holds
    proc = subprocess.run(["bash", "-c", f"'{sys.executable}' -m console users | head -1; "
                                         "echo \"status=${PIPESTATUS[0]}\" >&2"],
                          capture_output=True, text=True, env={**os.environ}, timeout=60)
    assert proc.stdout.startswith("USER"), proc
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "status=141"


def test_no_verb_and_no_terminal_is_an_error(console_env):
    result = run_main([])
    assert result.code == 2 and "needs a terminal" in result.err and result.out == ""


@pytest.mark.parametrize("argv,code,words", [
    (["audit", "--limit", "0"], 0, None),
    (["audit", "--limit", "-1"], 2, "-1 is negative; give 0 or more"),
    (["audit", "--limit", "many"], 2, "'many' is not a whole number"),
])
def test_audit_limits(console_env, emulator, argv, code, words):
    run_main(["login", "--no-wait", "--no-browser", "--user", "alice"])  # one event at least
    before = store_digest(console_env)
    result = run_main(argv)
    assert result.code == code, result
    if words is None:
        assert result.out == "" and result.err == ""
    else:
        assert len(result.err_lines) == 1 and words in result.err_lines[0]
    assert store_digest(console_env) == before


def test_status_with_redis_down_and_postgres_up_is_not_logged_in(pg_env, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    result = run_main(["status", "--user", "nobody"])
    assert result.code == 1, result
    assert result.out.startswith("nobody: not logged in"), result


@pytest.mark.parametrize("seconds,words", [(600, "10 minutes"), (60, "1 minute"), (45, "45 seconds"),
                                           (1, "1 second"), (90, "1 minute 30 seconds")])
def test_spans_read_as_words(seconds, words):
    from console.tokens import format_span

    assert format_span(seconds) == words
