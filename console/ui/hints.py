"""The engine's fix-it hints name CLI commands; inside the console they name the key instead.

``run: claude-console login --user alice`` is right in a shell and useless on the board,
where ``l`` does it. Each screen says which of its keys stands for which command.
"""

from __future__ import annotations

import re
from typing import Mapping

_COMMANDS = {
    "login": re.compile(r"run: claude-console login --user \S+"),
    "refresh": re.compile(r"(?:now with|run): claude-console refresh --user \S+"),
    "callback": re.compile(r"run: claude-console callback CODE --user \S+"),
}

BOARD = {"login": "press l to log the user in again", "refresh": "press r to refresh it now"}
DETAIL = {"login": "press l to log in again", "refresh": "press r to refresh it now"}
LOGIN = {"login": "press ctrl+r to start over with a new URL",
         "callback": "finish it on that user's own login"}


def with_keys(text: str, keys: Mapping[str, str]) -> str:
    """``text`` with every CLI hint this screen has a key for said as that key."""
    for command, pattern in _COMMANDS.items():
        if command in keys:
            text = pattern.sub(keys[command], text)
    return text
