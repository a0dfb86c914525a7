"""The app as screens see it: typed, so ``clock``, ``service`` and ``sandbox_url`` are checked
names instead of ``getattr`` guesses."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

if TYPE_CHECKING:   # the app imports the screens; only the type checker needs it here
    from ..app import ConsoleApp


def console_app(node: DOMNode) -> ConsoleApp:
    """The running :class:`~console.app.ConsoleApp` that ``node`` belongs to."""
    return cast("ConsoleApp", node.app)
