"""Logging that can never leak a secret: every record passes through ``redact``."""

from __future__ import annotations

import logging
import os
import re
import sys

from .users import printable

_PATTERNS = [
    # Anthropic tokens and keys wherever they appear.
    (re.compile(r"sk-ant-[A-Za-z]+\d*-[A-Za-z0-9_\-]{4,}"), "sk-ant-***"),
    # Authorization headers, in any casing, quoted or not.
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^\s'\",}]+"), r"\1\2***"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]+"), "Bearer ***"),
    # JSON or repr fields and query parameters holding secrets.
    (re.compile(r"(?i)(['\"]?(?:access_token|refresh_token|accessToken|refreshToken|code_verifier|"
                r"verifier|code|password|passphrase|master_key|encryption_key)['\"]?\s*[:=]\s*['\"]?)"
                r"([^'\"&\s,}]+)"), r"\1***"),
    (re.compile(r"(?i)([?&#](?:code|code_verifier|access_token|refresh_token)=)[^&\s#]+"), r"\1***"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then redacts the whole line (message, args and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        # Controls in a logged value (a user id, a provider's error body) are escaped so a log
        # line can neither drive the terminal that shows it nor forge another line.
        return printable(redact(super().format(record)), keep_lines=True)


class AccessLineFilter(logging.Filter):
    """For a web server's access log: the line redacted and its controls escaped; with
    ``drop_query`` the query string is cut off too (the web console's URLs never need it,
    and a key pasted into one must not reach a log)."""

    _QUERY = re.compile(r"\?[^\s\"]*")

    def __init__(self, drop_query: bool = False) -> None:
        super().__init__()
        self.drop_query = drop_query

    def _clean(self, text: str) -> str:
        if self.drop_query:
            text = self._QUERY.sub("?…", text)
        return printable(redact(text))

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:   # uvicorn: its formatter reads the args
            record.args = tuple(self._clean(a) if isinstance(a, str) else a for a in record.args)
        else:                                               # aiohttp: the line is already made
            record.msg, record.args = self._clean(record.getMessage()), ()
        return True


def setup_logging(level: str | None = None, verbose: bool = False, stream=None) -> None:
    """Configure the ``console`` loggers once: LITELLM_LOG_LEVEL or --verbose, to stderr."""
    name = "DEBUG" if verbose else (level or os.environ.get("LITELLM_LOG_LEVEL") or "WARNING")
    numeric = logging.getLevelName(str(name).upper())
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("console", "httpx", "httpcore"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h.formatter, RedactingFormatter)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(numeric)
        logger.propagate = False
