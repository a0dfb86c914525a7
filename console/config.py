"""Settings: defaults, then the seed's config.yaml, then environment variables (env wins).

The seed's file is read as it stands: ``${VAR}`` and ``os.environ/VAR`` are interpolated,
``model_list`` and unknown ``general_settings`` keys are kept but ignored, and
``claude_oauth`` may sit at the top level or inside ``general_settings``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
AUTHORIZE_URL = "https://claude.com/cai/oauth/authorize"
TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
REDIRECT_URI = "https://platform.claude.com/oauth/code/callback"
API_BASE_URL = "https://api.anthropic.com"
SCOPES = ("org:create_api_key user:profile user:inference "
          "user:sessions:claude_code user:mcp_servers user:file_upload")
BETA_HEADER = "oauth-2025-04-20"
# What Claude Code itself sends on token calls; Cloudflare refuses some agents (Python's among them).
USER_AGENT = "axios/1.15.2"
ANTHROPIC_VERSION = "2023-06-01"
# Hosts that moved: a configuration still naming one gets a warning naming the current host.
MOVED_HOSTS = {"console.anthropic.com": "platform.claude.com"}
DEFAULT_TOKEN_FILE = "~/.litellm/claude_tokens.json"


_CURRENT = {"authorize_url": AUTHORIZE_URL, "token_url": TOKEN_URL, "redirect_uri": REDIRECT_URI,
            "refresh_url": TOKEN_URL}


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
    beta_header: str = BETA_HEADER        # claude_oauth.beta_headers: comma-separated anthropic-beta list
    user_agent: str = USER_AGENT          # on every provider call, token and API
    refresh_scope: bool = False           # refresh sends the stored scopes (sources conflict)

    enabled: bool = True
    token_file: str = DEFAULT_TOKEN_FILE
    encryption_key: str = ""
    auto_refresh: bool = True
    refresh_buffer: float = 300.0
    usage_interval: float = 300.0         # at most one usage request per user per this, everywhere
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
    journal_path: str = ""                # the rescue journal; "" = beside the token file
    log_level: str = ""

    config_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Where a setting came from ("/etc/cc.yaml: claude_oauth.encryption_key", "DATABASE_URL"),
    # so a bad value is named as the operator wrote it.
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def token_path(self) -> Path:
        return Path(os.path.expanduser(self.token_file))

    @property
    def journal_file(self) -> Path:
        """Where rotated tokens land first (``console/journal.py``)."""
        if self.journal_path:
            return Path(os.path.expanduser(self.journal_path))
        token = self.token_path
        return token.parent / f"{token.stem}.d" / "rescue" / "journal"

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
        if self.qr_style not in ("auto", "half", "sextant"):
            raise ConfigError(f"claude_oauth.qr_style (CLAUDE_CONSOLE_QR_STYLE): {self.qr_style!r} "
                              "is not auto, half or sextant")
        from .users import user_id_problem

        problem = user_id_problem(self.default_user)
        if problem is not None:
            raise ConfigError(f"the default user (CLAUDE_CONSOLE_USER or claude_oauth.default_user) {problem}")
        if not self.user_agent.strip():
            raise ConfigError("claude_oauth.user_agent: must not be empty",
                              hint=f"leave it unset for the default {USER_AGENT!r}")
        if self.use_database and not self.database_url:
            raise ConfigError(f"{self.sources.get('use_database', 'claude_oauth.use_database')} is true but "
                              "no database URL is set (is ${DATABASE_URL} unset?)",
                              hint="set DATABASE_URL, or use_database: false for the file store")
        if self.database_url:
            check_url(self._where("database_url"), self.database_url, ("postgres", "postgresql"))
        if self.redis_url:
            check_url(self._where("redis_url"), self.redis_url, ("redis", "rediss", "unix"))
        check_token_path(self._where("token_file"), self.token_file)
        if self.encryption_key:
            from .crypto import Keyring

            Keyring.from_spec(self.encryption_key, source=self._where("encryption_key"))
        if not self.user_agent.strip():
            raise ConfigError("claude_oauth.user_agent: must not be empty",
                              hint=f"leave it unset for the default {USER_AGENT!r}")

    def _where(self, name: str) -> str:
        return self.sources.get(name, f"claude_oauth.{name}")

    def warnings(self) -> list[str]:
        """What an operator should hear at start: configured hosts that have moved."""
        out = []
        for key in ("authorize_url", "token_url", "redirect_uri", "refresh_url"):
            host = urlsplit(getattr(self, key) or "").hostname or ""
            if host in MOVED_HOSTS:
                out.append(f"claude_oauth.{key} names {host}, which Claude no longer serves OAuth on; "
                           f"the current host is {MOVED_HOSTS[host]} (e.g. {_CURRENT[key]})")
        return out


def check_url(where: str, value: str, schemes: tuple[str, ...]) -> None:
    """One line naming the setting when a URL cannot be used: wrong scheme, no host, bad port."""
    from urllib.parse import urlsplit

    shown = re.sub(r"//[^@/]*@", "//…@", value)[:80]  # never print a password
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: {shown!r} is not a URL ({exc})") from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{where}: {shown!r} is not a {schemes[0]}:// URL "
                          f"(expected {', '.join(s + '://' for s in schemes)})")
    if parts.scheme != "unix" and not (parts.hostname or "/" in (parts.query or "")) and port is None \
            and not parts.netloc:
        raise ConfigError(f"{where}: {shown!r} names no host")


def check_token_path(where: str, value: str) -> None:
    """A token file must be a path to a regular file (or not exist yet): never a folder, a FIFO
    (reading one would hang every verb) or a name holding NUL."""
    if "\0" in value:
        raise ConfigError(f"{where}: the path contains a NUL character")
    try:
        st = os.stat(os.path.expanduser(value))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise ConfigError(f"{where}: {value}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where}: {value} is a folder, not a token file",
                          hint=f"name a file inside it, e.g. {os.path.join(value, 'claude_tokens.json')}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {value} is not a regular file (a FIFO, socket or device)",
                          hint="name a regular file")



# config key (inside claude_oauth) -> (Settings field, kind)
_YAML_KEYS: dict[str, tuple[str, str]] = {
    "enabled": ("enabled", "bool"),
    "token_file": ("token_file", "str"),
    "encryption_key": ("encryption_key", "str"),
    "auto_refresh": ("auto_refresh", "bool"),
    "refresh_buffer": ("refresh_buffer", "seconds"),
    "refresh_threshold": ("refresh_buffer", "seconds"),
    "usage_interval": ("usage_interval", "seconds"),
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
    "beta_headers": ("beta_header", "scopes_csv"),
    "beta_header": ("beta_header", "scopes_csv"),
    "user_agent": ("user_agent", "str"),
    "refresh_scope": ("refresh_scope", "bool"),
    "default_user": ("default_user", "str"),
    "qr_style": ("qr_style", "str"),
    "pending_ttl": ("pending_ttl", "seconds"),
    "http_timeout": ("http_timeout", "seconds"),
    "max_retries": ("max_retries", "int"),
    "memory_cache_ttl": ("memory_cache_ttl", "seconds"),
    "journal_path": ("journal_path", "str"),
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
    "CLAUDE_OAUTH_BETA_HEADERS": ("beta_header", "scopes_csv"),
    "CLAUDE_OAUTH_USER_AGENT": ("user_agent", "str"),
    "CLAUDE_OAUTH_REFRESH_SCOPE": ("refresh_scope", "bool"),
    "CLAUDE_TOKEN_FILE": ("token_file", "str"),
    "CLAUDE_TOKEN_ENCRYPTION_KEY": ("encryption_key", "str"),
    "CLAUDE_REFRESH_BUFFER": ("refresh_buffer", "seconds"),
    "CLAUDE_USAGE_INTERVAL": ("usage_interval", "seconds"),
    "DATABASE_URL": ("database_url", "str"),
    "CLAUDE_CONSOLE_DB_POOL_SIZE": ("database_pool_size", "int"),
    "CLAUDE_CONSOLE_AUTO_MIGRATE": ("auto_migrate", "bool"),
    "REDIS_URL": ("redis_url", "str"),
    "REDIS_PREFIX": ("redis_prefix", "str"),
    "LITELLM_MASTER_KEY": ("master_key", "str"),
    "CLAUDE_CONSOLE_USER": ("default_user", "str"),
    "CLAUDE_CONSOLE_QR_STYLE": ("qr_style", "str"),
    "CLAUDE_CONSOLE_ALLOW_FILE_FALLBACK": ("allow_file_fallback", "bool"),
    "CLAUDE_CONSOLE_JOURNAL": ("journal_path", "str"),
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
        what = "a number of seconds" if kind == "seconds" else "a whole number"
        if isinstance(value, (bool, dict, list)):
            raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} {str(value)[:40]!r}")
        try:
            number = float(value) if kind == "seconds" else int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected {what}, got {str(value)[:40]!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected {what}, got {str(value)[:40]!r}")
        if number < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
        return number
    if kind == "scopes_csv":  # the anthropic-beta header is a comma-separated list
        items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
        return ",".join(str(v).strip() for v in items if str(v).strip())
    if kind == "scopes":
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: expected a list of scope names (strings)")
            return " ".join(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a list of scopes or a space-separated string, "
                              f"got {type(value).__name__} {value!r}")
        return " ".join(str(value).replace(",", " ").split())
    raise AssertionError(kind)


MAX_CONFIG_BYTES = 1024 * 1024


def _read_yaml(path: Path) -> dict[str, Any]:
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a folder", hint="pass a YAML file with --config")
    if path.exists() and not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file", hint="pass a YAML file with --config")
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: "
                              "not a configuration file")
        if b"\0" in raw:
            raise ConfigError(f"config file {path} is binary, not YAML text")
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist",
                          hint="pass an existing file with --config or unset CONSOLE_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
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
                near = difflib.get_close_matches(str(key), list(_YAML_KEYS), n=1)
                raise ConfigError(f"{path}: unknown key claude_oauth.{str(key)[:60]}"
                                  + (f"; did you mean {near[0]}?" if near else ""),
                                  hint="the README's Configuration section lists every key")
            name, kind = _YAML_KEYS[key]
            settings.sources[name] = f"{path}: claude_oauth.{key}"
            if value is None or value == "":
                continue
            setattr(settings, name, _coerce(value, kind, f"{path}: claude_oauth.{key}"))
        for key, name in (("database_url", "database_url"), ("master_key", "master_key"),
                          ("redis_url", "redis_url")):
            if general.get(key):
                setattr(settings, name, _coerce(general[key], "str", f"{path}: general_settings.{key}"))
                settings.sources.setdefault(name, f"{path}: general_settings.{key}")
    for var, (name, kind) in _ENV_KEYS.items():
        value = env.get(var)
        if value:
            setattr(settings, name, _coerce(value, kind, var))
            settings.sources[name] = var
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    settings.validate()
    return settings
