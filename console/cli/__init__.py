"""Argument parsing -> service calls -> printing. No logic of its own.

Exit codes: 0 success (for ``status``: a usable token), 1 failure (not logged in, refresh
rejected), 2 bad usage or configuration, 3 storage unreachable or unreadable. Tokens are
printed by ``token`` only; everywhere else they are masked.

The verbs live by what they touch: ``accounts`` (one user's tokens), ``files`` (backup,
restore, import, export), ``servers`` (processes and schema); ``output`` holds what they
share and ``parsing`` the parser and ``main``.
"""

from __future__ import annotations

from .parsing import VERBS, build_parser, main

__all__ = ["VERBS", "build_parser", "main"]
