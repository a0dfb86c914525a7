"""What workers send to screens, and the one line a failure shows.

Workers never touch widgets: they post these messages, and the screen's handlers update the view.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from ..errors import ConsoleError


def reason(exc: BaseException) -> str:
    """The one line an operator sees for a failure; never a traceback."""
    if isinstance(exc, ConsoleError):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}): {exc}"


@dataclass
class StageProgress(Message):
    """A worker got ``done`` of ``total`` through ``stage`` (key derivation, reading, writing)."""

    stage: str
    done: int
    total: int


@dataclass
class WorkFailed(Message):
    """A worker stopped; ``reason`` is the one line the operator sees."""

    reason: str
