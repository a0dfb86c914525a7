"""What the backup and restore screens share: their worker messages and the failure line."""

from __future__ import annotations

from textual.message import Message


class StageProgress(Message):
    """A worker got ``done`` of ``total`` through ``stage`` (key derivation, reading, writing)."""

    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage, self.done, self.total = stage, done, total


class WorkFailed(Message):
    """A worker stopped; ``reason`` is the one line the operator sees."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def failure_reason(exc: BaseException) -> str:
    from .board import reason  # imported late: the board imports these screens

    return reason(exc)
