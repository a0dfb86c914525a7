"""Settings: defaults, then the seed's config.yaml, then environment variables (env wins).

The seed's file is read as it stands: ``${VAR}`` and ``os.environ/VAR`` are interpolated,
``model_list`` and unknown ``general_settings`` keys are kept but ignored, and
``claude_oauth`` may sit at the top level or inside ``general_settings``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
AUTHORIZE_URL = "https://claude.com/cai/oauth/authorize"
TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
REDIRECT_URI = "https://platform.claude.com/oauth/code/callback"
API_BASE_URL = "https://api.anthropic.com"
SCOPES = ("org:create_api_key user:profile user:inference "
          "user:sessions:claude_code user:mcp_servers user:file_upload")
BETA_HEADER = "oauth-2025-04-20"
DEFAULT_TOKEN_FILE = "~/.litellm/claude_tokens.json"


@dataclass
class Settings:
    """Everything the engine needs to know; built once per process by ``load_settings``."""

    authorize_url: str = AUTHORIZE_URL
    token_url: str = TOKEN_URL
    redirect_uri: str = REDIRECT_URI
    client_id: str = CLIENT_ID
    scopes: str = SCOPES
    api_base_url: str = API_BASE_URL
    refresh_style: str = "token"          # "token" (grant on token_url) or "seed"
    refresh_url: str = ""                 # seed style: defaults to {api_base_url}/v1/oauth/refresh
    beta_header: str = BETA_HEADER

    enabled: bool = True
    token_file: str = DEFAULT_TOKEN_FILE
    encryption_key: str = ""
    auto_refresh: bool = True
    refresh_buffer: float = 300.0
    use_database: bool | None = None      # None: true when database_url is set
    database_url: str = ""
    database_pool_size: int = 10          # asyncpg connections per process
    auto_migrate: bool = True             # apply missing migrations when the database tier starts
    redis_url: str = ""
    redis_prefix: str = "claude-console:"  # keys and the invalidation channel start with it
    redis_max_ttl: float = 60.0           # longest a cached token may live in Redis
    allow_file_fallback: bool = False
    master_key: str = ""

    default_user: str = "default"
    qr_style: str = "auto"                # the login QR code: auto, half (blocks) or sextant
    pending_ttl: float = 600.0
    http_timeout: float = 30.0
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    memory_cache_ttl: float = 5.0
    log_level: str = ""

    config_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def token_path(self) -> Path:
        return Path(os.path.expanduser(self.token_file))

    @property
    def database_enabled(self) -> bool:
        if self.use_database is None:
            return bool(self.database_url)
        return bool(self.use_database and self.database_url)

    @property
    def effective_refresh_url(self) -> str:
        if self.refresh_style == "seed":
            return self.refresh_url or f"{self.api_base_url.rstrip('/')}/v1/oauth/refresh"
        return self.token_url

    def replace(self, **changes: Any) -> "Settings":
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        out = Settings(**data)
        out.validate()
        return out

    def validate(self) -> None:
        for key in ("authorize_url", "token_url", "redirect_uri", "api_base_url"):
            value = getattr(self, key)
            if not re.match(r"^https?://[^\s/]+", value or ""):
                raise ConfigError(f"claude_oauth.{key}: {value!r} is not an http(s) URL")
        if self.refresh_style not in ("token", "seed"):
            raise ConfigError(f"claude_oauth.refresh_style: {self.refresh_style!r} is not 'token' or 'seed'")
        if self.refresh_buffer < 0:
            raise ConfigError("claude_oauth.refresh_buffer: must be 0 or more seconds")
        if not self.client_id:
            raise ConfigError("claude_oauth.client_id: must not be empty")
        if not self.default_user:
            raise ConfigError("CLAUDE_CONSOLE_USER: must not be empty")
        if self.qr_style not in ("auto", "half", "sextant"):
            raise ConfigError(f"claude_oauth.qr_style (CLAUDE_CONSOLE_QR_STYLE): {self.qr_style!r} "
                              "is not auto, half or sextant")


# config key (inside claude_oauth) -> (Settings field, kind)
_YAML_KEYS: dict[str, tuple[str, str]] = {
    "enabled": ("enabled", "bool"),
    "token_file": ("token_file", "str"),
    "encryption_key": ("encryption_key", "str"),
    "auto_refresh": ("auto_refresh", "bool"),
    "refresh_buffer": ("refresh_buffer", "seconds"),
    "refresh_threshold": ("refresh_buffer", "seconds"),
    "use_database": ("use_database", "bool"),
    "database_url": ("database_url", "str"),
    "database_pool_size": ("database_pool_size", "int"),
    "auto_migrate": ("auto_migrate", "bool"),
    "redis_url": ("redis_url", "str"),
    "redis_prefix": ("redis_prefix", "str"),
    "redis_max_ttl": ("redis_max_ttl", "seconds"),
    "allow_file_fallback": ("allow_file_fallback", "bool"),
    "authorize_url": ("authorize_url", "str"),
    "token_url": ("token_url", "str"),
    "redirect_uri": ("redirect_uri", "str"),
    "client_id": ("client_id", "str"),
    "scopes": ("scopes", "scopes"),
    "api_base_url": ("api_base_url", "str"),
    "refresh_style": ("refresh_style", "str"),
    "refresh_url": ("refresh_url", "str"),
    "default_user": ("default_user", "str"),
    "qr_style": ("qr_style", "str"),
    "pending_ttl": ("pending_ttl", "seconds"),
    "http_timeout": ("http_timeout", "seconds"),
    "max_retries": ("max_retries", "int"),
    "memory_cache_ttl": ("memory_cache_ttl", "seconds"),
    "backoff_base": ("backoff_base", "seconds"),
    "backoff_cap": ("backoff_cap", "seconds"),
}

_ENV_KEYS: dict[str, tuple[str, str]] = {
    "CLAUDE_OAUTH_AUTHORIZE_URL": ("authorize_url", "str"),
    "CLAUDE_OAUTH_TOKEN_URL": ("token_url", "str"),
    "CLAUDE_OAUTH_REDIRECT_URI": ("redirect_uri", "str"),
    "CLAUDE_OAUTH_CLIENT_ID": ("client_id", "str"),
    "CLAUDE_OAUTH_SCOPES": ("scopes", "scopes"),
    "CLAUDE_API_BASE_URL": ("api_base_url", "str"),
    "CLAUDE_OAUTH_REFRESH_STYLE": ("refresh_style", "str"),
    "CLAUDE_OAUTH_REFRESH_URL": ("refresh_url", "str"),
    "CLAUDE_TOKEN_FILE": ("token_file", "str"),
    "CLAUDE_TOKEN_ENCRYPTION_KEY": ("encryption_key", "str"),
    "CLAUDE_REFRESH_BUFFER": ("refresh_buffer", "seconds"),
    "DATABASE_URL": ("database_url", "str"),
    "CLAUDE_CONSOLE_DB_POOL_SIZE": ("database_pool_size", "int"),
    "CLAUDE_CONSOLE_AUTO_MIGRATE": ("auto_migrate", "bool"),
    "REDIS_URL": ("redis_url", "str"),
    "REDIS_PREFIX": ("redis_prefix", "str"),
    "LITELLM_MASTER_KEY": ("master_key", "str"),
    "CLAUDE_CONSOLE_USER": ("default_user", "str"),
    "CLAUDE_CONSOLE_QR_STYLE": ("qr_style", "str"),
    "CLAUDE_CONSOLE_ALLOW_FILE_FALLBACK": ("allow_file_fallback", "bool"),
    "LITELLM_LOG_LEVEL": ("log_level", "str"),
    "CLAUDE_OAUTH_MAX_RETRIES": ("max_retries", "int"),
    "CLAUDE_OAUTH_BACKOFF_BASE": ("backoff_base", "seconds"),
    "CLAUDE_OAUTH_BACKOFF_CAP": ("backoff_cap", "seconds"),
    "CLAUDE_OAUTH_HTTP_TIMEOUT": ("http_timeout", "seconds"),
}

_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if value.startswith("os.environ/"):
            return env.get(value[len("os.environ/"):], "")
        return _INTERP.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _coerce(value: Any, kind: str, where: str) -> Any:
    if kind == "str":
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got a {type(value).__name__}")
        return "" if value is None else str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind in ("seconds", "int"):
        try:
            number = float(value) if kind == "seconds" else int(value)
        except (TypeError, ValueError):
            what = "a number of seconds" if kind == "seconds" else "a whole number"
            raise ConfigError(f"{where}: expected {what}, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
        return number
    if kind == "scopes":
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value)
        return " ".join(str(value).replace(",", " ").split())
    raise AssertionError(kind)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist",
                          hint="pass an existing file with --config or unset CONSOLE_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
    return data


def load_settings(config_path: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults < config file < environment < explicit overrides."""
    env = os.environ if env is None else env
    settings = Settings()
    path = config_path or env.get("CONSOLE_CONFIG") or None
    if path:
        path = Path(os.path.expanduser(str(path)))
        raw = _interpolate(_read_yaml(path), env)
        settings.config_path = str(path)
        general = raw.get("general_settings") or {}
        if not isinstance(general, dict):
            raise ConfigError(f"{path}: general_settings must be a mapping")
        block = raw.get("claude_oauth", general.get("claude_oauth")) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{path}: claude_oauth must be a mapping")
        for key, value in block.items():
            if key not in _YAML_KEYS:
                settings.extra[f"claude_oauth.{key}"] = value
                continue
            name, kind = _YAML_KEYS[key]
            if value is None or value == "":
                continue
            setattr(settings, name, _coerce(value, kind, f"{path}: claude_oauth.{key}"))
        for key, name in (("database_url", "database_url"), ("master_key", "master_key"),
                          ("redis_url", "redis_url")):
            if general.get(key):
                setattr(settings, name, _coerce(general[key], "str", f"{path}: general_settings.{key}"))
    for var, (name, kind) in _ENV_KEYS.items():
        value = env.get(var)
        if value:
            setattr(settings, name, _coerce(value, kind, var))
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    settings.validate()
    return settings
