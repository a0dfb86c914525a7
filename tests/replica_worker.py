"""A replica for tests/test_replicas.py: one process, one AuthService over PostgreSQL.

Reads commands on stdin, one per line: ``go USER N`` runs N coroutines that each ask for
USER's access token at once, and answers one JSON line with the sha256 of every token they
got (never the tokens) and any errors. ``quit`` exits. Settings come from the environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

from console.config import load_settings
from console.errors import ConsoleError
from console.service import AuthService


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def main() -> None:
    service = AuthService(load_settings(memory_cache_ttl=0.0), face="replica")
    await service.store.health()  # open the pool and the HTTP client before the race starts
    service.oauth.http
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                break
            _, user, count = line
            service.forget()

            async def one() -> str:
                try:
                    return digest(await service.get_access_token(user))
                except ConsoleError as exc:
                    return f"error: {exc}"

            results = await asyncio.gather(*[one() for _ in range(int(count))])
            print(json.dumps({"tokens": sorted({r for r in results if not r.startswith("error")}),
                              "errors": [r for r in results if r.startswith("error")]}), flush=True)
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
