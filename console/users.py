"""User ids: the one rule for what a user id may be, the one place the default user is
picked, and the one way an id is shown to people.

Every face (CLI, TUI, HTTP API, SDK) and every file that brings ids in (imports, restores)
checks an id here, where it enters. Ids read back from a store are shown through ``shown``
so an id that slipped in before the rule existed can still never move a cursor, clear a
screen, forge a line or be read as Rich/Textual markup.
"""

from __future__ import annotations

import re
import shlex

from .errors import UsageError

USER_ID_MAX = 256  # the database column (the seed's VARCHAR(256))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What must not reach a terminal or a log as it is: C0 (but newline and tab, which a caller
# may keep), DEL, C1, and the Unicode characters that break or reorder lines (line and
# paragraph separators, bidirectional overrides and marks, the byte-order mark).
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
_UNSAFE_KEEP_LINES = re.compile(f"[{_UNSAFE}]")
_UNSAFE_ALL = re.compile(f"[\n\t{_UNSAFE}]")


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with every character that could move the cursor, clear the screen or forge a
    line escaped (``\\x1b``, ``\\u2028``); invalid UTF-8 (lone surrogates) escaped too.
    ``keep_lines`` leaves newlines and tabs alone (whole messages, not single values)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return (_UNSAFE_KEEP_LINES if keep_lines else _UNSAFE_ALL).sub(_escaped, text)
# The same rule as a JSON-schema pattern (the OpenAPI document states it).
USER_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


class BadUserId(UsageError):
    """A user id that breaks the rule; nothing was read or written for it."""


def user_id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a user id, or None when it is a good one."""
    if not isinstance(value, str):
        return "is not text"
    if not value:
        return "is empty"
    if len(value) > USER_ID_MAX:
        return f"is {len(value)} characters long; the limit is {USER_ID_MAX}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 (argv, JSON \ud800)
        return "is not valid UTF-8"
    if _CONTROL.search(value):
        return "contains control characters"
    return None


def check_user_id(value: object, where: str = "user id") -> str:
    """``value`` when it is a valid user id, else ``BadUserId`` naming what is wrong."""
    problem = user_id_problem(value)
    if problem is not None:
        raise BadUserId(f"{where} '{shown(value)}' {problem}" if value else f"{where} {problem}",
                        hint="a user id is 1 to 256 characters of text without control characters")
    return value  # type: ignore[return-value]


def resolve_user(user_id: str | None, default: str) -> str:
    """The user a call is about: ``user_id``, or the default user when it is None (not '')."""
    return check_user_id(default if user_id is None else user_id)


def shown(value: object, limit: int = 80) -> str:
    """An id as it may be printed anywhere: control characters (and invalid UTF-8) escaped,
    long ids cut with an ellipsis. Rich markup is the screen's business: see ``markup_safe``."""
    text = printable(value if isinstance(value, str) else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markup_safe(value: object, limit: int = 80) -> str:
    """``shown`` for text that Rich or Textual reads as markup (labels, notifications)."""
    from rich.markup import escape

    return escape(shown(value, limit))


def fix_command(verb: str, user_id: str, *rest: str) -> str:
    """``claude-console VERB --user ID``, with the id quoted for a POSIX shell."""
    words = ["claude-console", verb, *rest, "--user", shlex.quote(shown(user_id, USER_ID_MAX))]
    return " ".join(words)
