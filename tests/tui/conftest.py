"""The TUI tests see a plain terminal: ``auto`` choices (the QR drawing) must not depend on
the terminal the tests happen to run in."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch):
    for var in ("TERM_PROGRAM", "KITTY_WINDOW_ID", "VTE_VERSION", "WT_SESSION", "CLAUDE_CONSOLE_QR_STYLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
