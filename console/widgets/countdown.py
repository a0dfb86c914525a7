"""A live countdown to a deadline, ticking once a second on the app's clock.

Time comes from ``app.clock()`` when the app has one, so snapshot tests can freeze it.
The text always carries a word ("expires in", "expired"), never colour alone.
"""

from __future__ import annotations

import time
from typing import Callable

from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from ..tokens import format_duration

URGENT_SECONDS = 60.0


class Countdown(Static):
    """``<label> 9m 59s``; turns to ``<expired_text>`` and posts ``Expired`` once at zero."""

    DEFAULT_CSS = """
    Countdown { height: 1; width: auto; }
    Countdown.-urgent { color: $warning; text-style: bold; }
    Countdown.-expired { color: $error; text-style: bold; }
    """

    deadline: reactive[float | None] = reactive(None, init=False)

    class Expired(Message):
        """The deadline has passed (sent once per deadline)."""

        def __init__(self, countdown: "Countdown") -> None:
            super().__init__()
            self.countdown = countdown

        @property
        def control(self) -> "Countdown":
            return self.countdown

    def __init__(self, deadline: float | None = None, *, label: str = "expires in",
                 expired_text: str = "expired", clock: Callable[[], float] = time.time,
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        """``clock``: the time source (the app passes its own, so tests can freeze it)."""
        super().__init__("", name=name, id=id, classes=classes)
        self.clock = clock
        self.label = label
        self.expired_text = expired_text
        self._announced = False
        self.set_reactive(Countdown.deadline, deadline)

    def now(self) -> float:
        return self.clock()

    @property
    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.now()

    def on_mount(self) -> None:
        self.set_interval(1.0, self.tick)
        self.tick()

    def watch_deadline(self, _old: float | None, _new: float | None) -> None:
        self._announced = False
        if self.is_mounted:
            self.tick()

    def tick(self) -> None:
        left = self.remaining
        if left is None:
            self.update("")
            self.set_class(False, "-urgent", "-expired")
            return
        expired = left <= 0
        self.set_class(expired, "-expired")
        self.set_class(0 < left <= URGENT_SECONDS, "-urgent")
        self.update(self.expired_text if expired else f"{self.label} {format_duration(left)}")
        if expired and not self._announced:
            self._announced = True
            self.post_message(self.Expired(self))
