"""Stopping a long-running face (a CLI verb, the refresher, the TUI) without losing a token:
SIGTERM becomes a graceful stop, and closing waits for a token held in memory only. Every face
passes its own ``say`` for the lines it prints."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .service import AuthService


def stop_on_sigterm(stop: Callable[[], Any], *, say: Callable[[str], None]) -> None:
    """SIGTERM calls ``stop`` once (a graceful stop, so held tokens get their last tries) instead
    of killing the process where it stands; a second SIGTERM only says we are still waiting."""
    stopped = []

    def on_term() -> None:
        if stopped:
            say("still stopping: waiting for held tokens to be stored (see above)")
            return
        stopped.append(True)
        stop()

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        pass


async def close_service(service: "AuthService", *, say: Callable[[str], None]) -> int:
    """Close the service; a token held in memory only is retried first (``hold_timeout``),
    saying so. Returns 3 if one could not be stored before the time ran out, else 0."""
    waiting = service.held_in_memory_only()
    if waiting:
        say(f"not exiting yet: the new tokens of {', '.join(waiting)} are held in memory only, not yet "
            f"stored; retrying for up to {service.hold_timeout:g}s")
    await service.aclose()
    if service.lost_at_exit:
        say(f"error: the new tokens of {', '.join(service.lost_at_exit)} could not be stored before "
            f"exiting; those users must log in again")
        return 3
    if waiting:
        say("held tokens stored; exiting")
    return 0
