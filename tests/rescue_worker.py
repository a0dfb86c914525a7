"""A process to kill -9 mid-refresh (tests/test_rescue_journal.py): one AuthService from the
environment. Prints ``ready``; on each ``go USER`` line refreshes USER (force) and prints
``done``. ``CLAUDE_CONSOLE_TEST_SAVE_DELAY`` stretches the gap between the journal write and
the store write so a kill can land in it."""

from __future__ import annotations

import asyncio
import sys

from console.config import load_settings
from console.errors import ConsoleError
from console.service import AuthService


async def main() -> None:
    service = AuthService(load_settings(), face="rescue-worker")
    await service.store.health()
    service.oauth.http
    service.journal.open()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                break
            try:
                await service.refresh(line[1], force=True)
                print("done", flush=True)
            except ConsoleError as exc:
                print(f"error {exc}", flush=True)
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
