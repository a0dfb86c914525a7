"""Random bytes as user ids, pasted codes and config values into the CLI entry point (issue 13):
never a traceback, never a hang, every refusal one line with a known exit code."""

from __future__ import annotations

import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from inputs_kit import run_main

# argv arrives as bytes decoded with surrogateescape, as Python does for a real process.
raw_text = st.binary(min_size=0, max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape"))
texty = st.one_of(raw_text, st.text(max_size=300))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a random relative token_file lands here, nowhere else


class _Hang(Exception):
    pass


def _run(argv, stdin: str = ""):
    def alarm(signum, frame):
        raise _Hang(f"claude-console {argv!r} did not finish in 20 s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        result = run_main(argv, stdin=stdin)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "Traceback" not in result.err, result.err
    assert result.code in (0, 1, 2, 3), result
    if result.code:
        assert len(result.err_lines) <= 1 or "usage:" in result.err, result.err
    for stream in (result.out, result.err):
        assert "\x1b" not in stream and "\x9b" not in stream
    return result


@FUZZ
@given(user=texty)
def test_random_user_ids(console_env, user):
    for verb in (["status"], ["logout", "--yes"], ["audit"]):
        result = _run([*verb, "--user", user])
        if result.code == 2:
            assert "user id" in result.err or "expected one argument" in result.err


@FUZZ
@given(code=texty)
def test_random_pasted_codes(console_env, code):
    result = _run(["callback", "-"], stdin=code)
    assert result.code in (1, 2)
    result = _run(["callback", "--", code]) if code else None
    if result is not None:
        assert result.code in (1, 2)


@FUZZ
@given(key=st.sampled_from(["refresh_buffer", "scopes", "token_file", "database_url", "redis_url",
                            "use_database", "default_user", "encryption_key", "max_retries", "refrsh"]),
       value=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_random_config_values(console_env, tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_bytes(b"claude_oauth:\n  " + key.encode() + b": " + value + b"\n")
    os.environ.pop("DATABASE_URL", None)
    _run(["--config", str(path), "users"])


@FUZZ
@given(blob=st.binary(max_size=400))
def test_random_config_files(console_env, tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_bytes(blob)
    _run(["--config", str(path), "users"])
