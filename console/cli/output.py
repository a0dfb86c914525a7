"""What every verb shares: printing, and the service built and closed around one command."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Callable

from .. import users
from ..shutdown import close_service, stop_on_sigterm



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


def run(args, body: Callable, make_service: Callable = build_service) -> int:
    """Build the service, run one async body, print the storage warnings, close everything."""
    async def main() -> int:
        service = make_service(args)
        stop_on_sigterm(asyncio.current_task().cancel, say=err)
        code = 0
        try:
            code = await body(service)
        except asyncio.CancelledError:
            err("stopping (SIGTERM)")
        finally:
            for warning in service.store.warnings:
                err(f"warning: {warning}")
            closed = await close_service(service, say=err)
        return code or closed

    return asyncio.run(main())
