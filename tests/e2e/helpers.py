"""What the CLI tests share: running ``claude-console`` with a leak check, reading the token file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from console.crypto import Keyring
from console.store.file import FileTier
from console.tokens import TokenRecord

# Anthropic access/refresh tokens in the clear; the masked form (sk-ant-oat01-…abcd) does not match.
TOKEN_RE = re.compile(r"sk-ant-[a-z]{3}\d{2}-[A-Za-z0-9_\-]{8,}")
SCRIPT = Path(sys.executable).with_name("claude-console")


class Result(NamedTuple):
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        """stderr without the storage warnings the CLI may add."""
        return [line for line in self.err.splitlines() if line and not line.startswith("warning:")]

    def json(self):
        return json.loads(self.out)


def _verb(args: tuple[str, ...]) -> str | None:
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg == "--config":
            skip_next = True
        elif not arg.startswith("-"):
            return arg
    return None


class Cli:
    """``cli(*args, input=None, env=None)`` -> ``Result(code, out, err)``; env values of None unset."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()  # codes and verifiers that must never be printed

    def env(self, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        env = {**os.environ}  # console_env already applied the emulator settings here
        env.pop("PYTEST_CURRENT_TEST", None)
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def __call__(self, *args: str, input: str | None = None,
                 env: dict[str, str | None] | None = None, timeout: float = 60) -> Result:
        proc = subprocess.run([sys.executable, "-m", "console", *args], input=input if input is not None else "",
                              env=self.env(env), capture_output=True, text=True, timeout=timeout)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        self.check_no_leak(args, result)
        return result

    def check_no_leak(self, args: tuple[str, ...], result: Result) -> None:
        where = f"claude-console {' '.join(args)}"
        assert not TOKEN_RE.search(result.err), f"a token leaked on stderr of {where}:\n{result.err}"
        if _verb(args) == "token" and result.code == 0:
            assert TOKEN_RE.fullmatch(result.out.rstrip("\n")) and result.out.count("\n") == 1, \
                f"`token` must print only the token:\n{result.out}"
        else:
            assert not TOKEN_RE.search(result.out), f"a token leaked on stdout of {where}:\n{result.out}"
        for secret in self.secrets:
            assert secret not in result.out and secret not in result.err, \
                f"a code or verifier leaked from {where}"


# -- reading and ageing the stored tokens from the test process -----------------------------

class StoredTokens:
    """The token file as the test sees it: read a record, or change one as another writer would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, user: str = "default", key: str = "", path: Path | None = None) -> TokenRecord | None:
        return asyncio.run(FileTier(path or self.path, Keyring.from_spec(key)).get(user))

    def rewrite(self, user: str = "default", key: str = "", **changes) -> TokenRecord:
        async def go() -> TokenRecord:
            tier = FileTier(self.path, Keyring.from_spec(key))
            record = await tier.get(user)
            assert record is not None, f"user {user!r} is not stored"
            return await tier.put(record.evolve(**changes))

        return asyncio.run(go())

    def expire(self, user: str = "default", key: str = "") -> TokenRecord:
        return self.rewrite(user, key, expires_at=time.time() - 60)

    def bytes(self) -> bytes:
        return self.path.read_bytes()
