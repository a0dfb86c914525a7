"""What every verb shares: printing, and the service built and closed around one command."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Callable

from .. import users



def printable(text: str) -> str:
    """Terminal controls and invalid UTF-8 never reach a terminal from a verb: whatever a
    stored id or an error holds, it cannot move the cursor or forge a line."""
    return users.printable(text, keep_lines=True)


def out(text: str = "", *, raw: bool = False) -> None:
    """One line (or several) to stdout; ``raw`` only for our own escapes (the QR code)."""
    print(text if raw else printable(text), flush=True)


def err(text: str) -> None:
    print(printable(text), file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str), flush=True)


def isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- the service, built per command ---------------------------------------------------------

def cli_settings(args):
    """One command's settings (--config or $CONSOLE_CONFIG), with logging set up as they and
    --verbose say."""
    from ..config import load_settings
    from ..logs import setup_logging

    settings = load_settings(args.config)
    setup_logging(settings.log_level or None, verbose=args.verbose)
    for warning in settings.warnings():  # hosts that moved: said at every start
        err(f"warning: {warning}")
    return settings


def build_service(args):
    from ..service import AuthService

    return AuthService(cli_settings(args), face="cli")


def stop_on_sigterm(stop: Callable[[], Any]) -> None:
    """SIGTERM calls ``stop`` once (a graceful stop, so held tokens get their last tries) instead
    of killing the process where it stands; a second SIGTERM only says we are still waiting."""
    import signal

    stopped = []

    def on_term() -> None:
        if stopped:
            err("still stopping: waiting for held tokens to be stored (see above)")
            return
        stopped.append(True)
        stop()

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        pass


async def close_service(service) -> int:
    """Close the service; a token held in memory only is retried first (``hold_timeout``),
    saying so. Returns 3 if one could not be stored before the time ran out, else 0."""
    waiting = service.held_in_memory_only()
    if waiting:
        err(f"not exiting yet: the new tokens of {', '.join(waiting)} are held in memory only, not yet "
            f"stored; retrying for up to {service.hold_timeout:g}s")
    await service.aclose()
    if service.lost_at_exit:
        err(f"error: the new tokens of {', '.join(service.lost_at_exit)} could not be stored before "
            f"exiting; those users must log in again")
        return 3
    if waiting:
        err("held tokens stored; exiting")
    return 0


def run(args, body: Callable, make_service: Callable = build_service) -> int:
    """Build the service, run one async body, print the storage warnings, close everything."""
    async def main() -> int:
        service = make_service(args)
        stop_on_sigterm(asyncio.current_task().cancel)
        code = 0
        try:
            code = await body(service)
        except asyncio.CancelledError:
            err("stopping (SIGTERM)")
        finally:
            for warning in service.store.warnings:
                err(f"warning: {warning}")
            closed = await close_service(service)
        return code or closed

    return asyncio.run(main())
