"""How a long transfer reports and paces itself: progress callbacks, user counts for people,
a pause of the cyclic GC while 100 000 rows are built or parsed."""

from __future__ import annotations

import contextlib
import gc
from typing import Callable, Iterator

Progress = Callable[[str, int, int], None]   # (stage, done, total)


def noop(stage: str, done: int, total: int) -> None:
    pass


def users_text(n: int) -> str:
    """``1 user``, ``2 users``: for the faces' one-line results."""
    from ..tokens import count_text

    return count_text(n, "user")


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic GC while building or parsing 100 000 rows: it only finds no garbage, slowly."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
