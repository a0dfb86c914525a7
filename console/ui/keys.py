"""The keys a screen offers, as the help screen (``?``) and the command palette list them."""

from __future__ import annotations

from typing import Iterator

from textual.binding import ActiveBinding
from textual.screen import Screen

# Actions every screen has that say nothing useful in a key list.
NOISE = frozenset({"app.focus_next", "app.focus_previous", "focus_next", "focus_previous", "copy_text",
                   "screen.copy_text"})


def listed_bindings(screen: Screen, skip: frozenset[str] = NOISE) -> Iterator[ActiveBinding]:
    """The screen's active bindings worth listing: those with a description, minus ``skip``."""
    for active in screen.active_bindings.values():
        if active.binding.action not in skip and active.binding.description:
            yield active
