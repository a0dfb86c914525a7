"""`claude-console exec --user U -- CMD ARGS`: the child gets a valid access token and nothing it
could refresh with; its exit code comes back; the hand-out is audited. Real subprocesses."""

from __future__ import annotations

import hashlib
import json
import sys
import time

import pytest

pytestmark = pytest.mark.e2e

CHILD = """
import hashlib, json, os, sys
token = os.environ.get("CLAUDE_CODE_OAUTH_TOKEN", "")
print(json.dumps({"sha": hashlib.sha256(token.encode()).hexdigest(), "args": sys.argv[1:],
                  "env": sorted(k for k in os.environ if k.startswith(("CLAUDE_", "LITELLM_"))),
                  "values": hashlib.sha256("\\n".join(os.environ.values()).encode()).hexdigest()}))
refresh = sys.stdin.readline().strip()
print("refresh token seen:", any(refresh in v for v in os.environ.values()))
sys.exit(int(sys.argv[1]))
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_exec_hands_over_a_valid_access_token_only(run_cli, cli_login, emulator, tokens, tmp_path):
    cli_login("alice")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stored = tokens.get("alice")
    result = run_cli("exec", "--user", "alice", "--", sys.executable, str(script), "7", "--flag",
                     input=stored.refresh_token + "\n",
                     env={"CLAUDE_REFRESH_TOKEN": stored.refresh_token, "LITELLM_MASTER_KEY": "mk"})
    assert result.code == 7, result.err  # the child's exit code, passed through
    seen = json.loads(result.out.splitlines()[0])
    assert seen["sha"] == sha(stored.access_token)
    assert seen["args"] == ["7", "--flag"]
    assert "CLAUDE_REFRESH_TOKEN" not in seen["env"] and "LITELLM_MASTER_KEY" not in seen["env"]
    assert result.out.splitlines()[1] == "refresh token seen: False"
    audit = run_cli("audit", "--user", "alice", "--json").json()
    assert audit[0]["action"] == "token_handed_out" and audit[0]["detail"].startswith("to exec:")

    # inside the refresh buffer: refreshed first, and the child gets the new token
    tokens.rewrite("alice", expires_at=time.time() + 30)
    result = run_cli("exec", "--user", "alice", "--", sys.executable, str(script), "0", input="x\n")
    assert result.code == 0, result.err
    fresh = tokens.get("alice")
    assert fresh.access_token != stored.access_token
    assert json.loads(result.out.splitlines()[0])["sha"] == sha(fresh.access_token)


def test_exec_refusals_are_one_line_and_run_nothing(run_cli, cli_login, emulator, tmp_path):
    marker = tmp_path / "ran"
    touch = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    result = run_cli("exec", "--user", "nobody", *touch)
    assert result.code == 1 and not marker.exists()
    assert result.err_lines == ["error: user 'nobody' is not logged in; run: claude-console login --user nobody"]
    result = run_cli("exec", "--user", "nobody", "--", "no-such-command-here")
    assert result.code == 127
    assert result.err_lines == ["error: command not found: no-such-command-here; check the name and PATH; "
                                "nothing was run"]
    cli_login("alice")
    emulator.state.set_org_state("alice@example.com", "disabled")
    run_cli("refresh", "--user", "alice")
    result = run_cli("exec", "--user", "alice", *touch)
    assert result.code == 1 and not marker.exists() and "Traceback" not in result.err
    assert result.err_lines[0].startswith("error: user 'alice' is account_disabled: Claude disabled")
