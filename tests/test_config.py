import pytest

from console.config import AUTHORIZE_URL, TOKEN_URL, load_settings
from console.errors import ConfigError

SEED_CONFIG = """
model_list:
  - model_name: claude-3-sonnet
    litellm_params:
      model: anthropic/claude-3-sonnet-20240229

general_settings:
  master_key: ${LITELLM_MASTER_KEY}
  database_url: ${DATABASE_URL}

claude_oauth:
  enabled: true
  token_file: ${TOKEN_DIR}/claude_tokens.json
  encryption_key: ${CLAUDE_TOKEN_ENCRYPTION_KEY}
  auto_refresh: true
  refresh_buffer: 600
  use_database: false
"""


def test_defaults_are_the_newest_public_values():
    s = load_settings(env={})
    assert s.authorize_url == AUTHORIZE_URL and s.token_url == TOKEN_URL
    assert "user:inference" in s.scopes.split()
    assert s.refresh_style == "token" and s.effective_refresh_url == TOKEN_URL
    assert s.token_file.endswith(".litellm/claude_tokens.json")


def test_seed_config_reads_as_it_stands(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(SEED_CONFIG)
    env = {"LITELLM_MASTER_KEY": "sk-1234", "TOKEN_DIR": str(tmp_path), "DATABASE_URL": ""}
    s = load_settings(path, env=env)
    assert s.master_key == "sk-1234"
    assert s.token_file == f"{tmp_path}/claude_tokens.json"
    assert s.refresh_buffer == 600 and s.auto_refresh is True
    assert not s.database_enabled


def test_env_wins_over_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("claude_oauth:\n  token_url: https://file.example/token\n  client_id: from-file\n")
    env = {"CLAUDE_OAUTH_TOKEN_URL": "https://env.example/token"}
    s = load_settings(path, env=env)
    assert s.token_url == "https://env.example/token"
    assert s.client_id == "from-file"


def test_scopes_from_list_or_string(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("claude_oauth:\n  scopes: [user:profile, user:inference]\n")
    assert load_settings(path, env={}).scopes == "user:profile user:inference"
    assert load_settings(env={"CLAUDE_OAUTH_SCOPES": "a,b c"}).scopes == "a b c"


def test_seed_refresh_style(tmp_path):
    s = load_settings(env={"CLAUDE_OAUTH_REFRESH_STYLE": "seed", "CLAUDE_API_BASE_URL": "http://h:1"})
    assert s.effective_refresh_url == "http://h:1/v1/oauth/refresh"


@pytest.mark.parametrize("body,needle", [
    ("claude_oauth:\n  refresh_buffer: soon\n", "claude_oauth.refresh_buffer"),
    ("claude_oauth:\n  auto_refresh: maybe\n", "claude_oauth.auto_refresh"),
    ("claude_oauth:\n  token_url: ftp://x\n", "claude_oauth.token_url"),
    ("claude_oauth:\n  refresh_style: magic\n", "claude_oauth.refresh_style"),
    ("claude_oauth: [1, 2]\n", "claude_oauth must be a mapping"),
    ("claude_oauth:\n  token_file: [a\n", "line"),
    ("- just\n- a list\n", "top level"),
])
def test_bad_config_names_the_key(tmp_path, body, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert needle in str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"CONSOLE_CONFIG": str(tmp_path / "nope.yaml")})


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="CLAUDE_REFRESH_BUFFER"):
        load_settings(env={"CLAUDE_REFRESH_BUFFER": "-1"})


def test_qr_style_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("claude_oauth:\n  qr_style: sextant\n")
    assert load_settings(path, env={}).qr_style == "sextant"
    assert load_settings(path, env={"CLAUDE_CONSOLE_QR_STYLE": "half"}).qr_style == "half"
    assert load_settings(env={}).qr_style == "auto"
    with pytest.raises(ConfigError, match="qr_style.*'braille' is not auto, half or sextant"):
        load_settings(env={"CLAUDE_CONSOLE_QR_STYLE": "braille"})
