"""Configuration inputs (issue 13): each mistake is one line naming the setting, exit 2,
nothing stored changed; no verb hangs on a token path that is not a file."""

from __future__ import annotations

import os

import pytest

from inputs_kit import run_main, store_digest

KEY = "A" * 43 + "="  # base64 of 32 bytes

YAML_ROWS = [
    # config file text, extra environment, words of the one line
    ("claude_oauth:\n  refrsh_buffer: 10\n", {}, "unknown key claude_oauth.refrsh_buffer; did you mean refresh_buffer?"),
    ("claude_oauth:\n  colour: blue\n", {}, "unknown key claude_oauth.colour"),
    ("claude_oauth:\n  scopes: 5\n", {}, "claude_oauth.scopes: expected a list of scopes"),
    ("claude_oauth:\n  scopes: [1, 2]\n", {}, "claude_oauth.scopes: expected a list of scope names"),
    ("claude_oauth:\n  refresh_buffer: .nan\n", {}, "claude_oauth.refresh_buffer: expected a number of seconds"),
    ("claude_oauth:\n  refresh_buffer: NaN\n", {}, "claude_oauth.refresh_buffer: expected a number of seconds"),
    ("claude_oauth:\n  http_timeout: .inf\n", {}, "claude_oauth.http_timeout: expected a number of seconds"),
    ("claude_oauth:\n  max_retries: true\n", {}, "claude_oauth.max_retries: expected a whole number"),
    ("claude_oauth:\n  use_database: true\n  database_url: ${DATABASE_URL}\n", {},
     "use_database is true but no database URL is set"),
    ("claude_oauth:\n  database_url: notaurl\n", {}, "claude_oauth.database_url: 'notaurl' is not a postgres:// URL"),
    ("claude_oauth:\n  database_url: mysql://u:secret@db/x\n", {}, "claude_oauth.database_url: 'mysql://…@db/x'"),
    ("claude_oauth:\n  database_url: postgresql://db:abc/x\n", {}, "claude_oauth.database_url: 'postgresql://db:abc/x' is not a URL"),
    ("claude_oauth:\n  redis_url: 'http://[::1'\n", {}, "claude_oauth.redis_url: 'http://[::1' is not a URL"),
    ("general_settings:\n  redis_url: notaurl\n", {}, "general_settings.redis_url: 'notaurl' is not a redis:// URL"),
    ("claude_oauth:\n  encryption_key: not-a-key\n", {}, "claude_oauth.encryption_key: a key is not base64 of 32 bytes"),
    ("claude_oauth: [1, 2]\n", {}, "claude_oauth must be a mapping"),
    ("a: [" * 5000 + "]" * 5000 + "\n", {}, "nested too deeply"),
    (b"claude_oauth:\n  token_file: \xff\xfe\n", {}, "is not UTF-8 text"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", {}, "is binary, not YAML text"),
    ("x: [1\n", {}, "at line"),
]


@pytest.mark.parametrize("text,env,words", YAML_ROWS, ids=[r[2][:40] for r in YAML_ROWS])
def test_bad_configuration_is_one_line_and_exit_2(console_env, tmp_path, monkeypatch, text, env, words):
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = store_digest(console_env)
    result = run_main(["--config", str(path), "users"])
    assert result.code == 2, result
    assert len(result.err_lines) == 1 and words in result.err_lines[0], result.err
    assert "Traceback" not in result.err and "secret" not in result.err
    assert store_digest(console_env) == before


ENV_ROWS = [
    ({"DATABASE_URL": "notaurl"}, "DATABASE_URL: 'notaurl' is not a postgres:// URL"),
    ({"REDIS_URL": "redis://h:port/0"}, "REDIS_URL: 'redis://h:port/0' is not a URL"),
    ({"CLAUDE_TOKEN_ENCRYPTION_KEY": "short"}, "CLAUDE_TOKEN_ENCRYPTION_KEY: a key is not base64"),
    ({"CLAUDE_REFRESH_BUFFER": "nan"}, "CLAUDE_REFRESH_BUFFER: expected a number of seconds"),
    ({"CLAUDE_TOKEN_FILE": "/tmp/x\0y"}, None),  # the OS refuses NUL in the environment itself
]


@pytest.mark.parametrize("env,words", [r for r in ENV_ROWS if r[1]], ids=[r[1][:30] for r in ENV_ROWS if r[1]])
def test_bad_environment_is_one_line_and_exit_2(console_env, monkeypatch, env, words):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = store_digest(console_env)
    result = run_main(["status"])
    assert result.code == 2 and len(result.err_lines) == 1 and words in result.err_lines[0], result
    assert store_digest(console_env) == before


def test_token_paths_that_are_not_files_are_refused_at_start(console_env, tmp_path, monkeypatch):
    folder = tmp_path / "afolder"
    folder.mkdir()
    fifo = tmp_path / "afifo"
    os.mkfifo(fifo)
    for path, words in ((folder, "is a folder, not a token file"), (fifo, "is not a regular file")):
        monkeypatch.setenv("CLAUDE_TOKEN_FILE", str(path))
        result = run_main(["users"])  # a FIFO would hang a read: refused before any
        assert result.code == 2 and words in result.err and "CLAUDE_TOKEN_FILE" in result.err, result
    config = tmp_path / "c.yaml"
    config.write_text('claude_oauth:\n  token_file: "/tmp/a\\0b"\n')
    monkeypatch.delenv("CLAUDE_TOKEN_FILE")
    result = run_main(["--config", str(config), "users"])
    assert result.code == 2 and "claude_oauth.token_file: the path contains a NUL character" in result.err


@pytest.mark.parametrize("url,code,words", [
    ("notaurl", 2, "health --url: 'notaurl' is not a http:// URL"),
    ("http://[::1", 2, "is not a URL"),
    ("http://127.0.0.1:abc/health", 2, "is not a URL"),
])
def test_health_url_that_cannot_be_parsed(url, code, words):
    result = run_main(["health", "--url", url])
    assert result.code == code and len(result.err_lines) == 1 and words in result.err_lines[0], result


def test_health_url_on_the_wrong_path_says_so(emulator):
    result = run_main(["health", "--url", f"{emulator.url}/nothing-here"])
    assert result.code == 1 and "not as the health endpoint does" in result.err, result
