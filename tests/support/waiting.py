"""The one way tests wait: poll a condition until it holds or a deadline passes.

``wait_for`` is for async tests (the predicate may return an awaitable; ``pause`` lets a Textual
pilot's ``pause`` replace ``asyncio.sleep``), ``wait_for_sync`` for plain ones. Both return the
predicate's first truthy value and fail with an ``AssertionError`` naming what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable


class _Deadline:
    def __init__(self, timeout: float, what: str, show: Callable[[], str] | None) -> None:
        self.timeout = timeout
        self.what = what
        self.show = show
        self.at = time.monotonic() + timeout

    def reached(self, value: Any) -> bool:
        """True once ``value`` holds; raises when it still does not after the deadline."""
        if value:
            return True
        if time.monotonic() > self.at:
            detail = f"\n{self.show()}" if self.show is not None else ""
            raise AssertionError(f"timed out after {self.timeout:g}s waiting for {self.what}{detail}")
        return False


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, *, what: str = "the condition",
                   show: Callable[[], str] | None = None, interval: float = 0.02,
                   pause: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> Any:
    deadline = _Deadline(timeout, what, show)
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if deadline.reached(value):
            return value
        await pause(interval)


def wait_for_sync(predicate: Callable[[], Any], timeout: float = 5.0, *, what: str = "the condition",
                  show: Callable[[], str] | None = None, interval: float = 0.02) -> Any:
    deadline = _Deadline(timeout, what, show)
    while True:
        value = predicate()
        if deadline.reached(value):
            return value
        time.sleep(interval)
