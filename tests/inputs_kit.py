"""Shared by the input tables (issue 13): run ``console.cli.main`` in-process with captured
output, and a digest of everything stored so a row can prove that nothing changed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path
from typing import NamedTuple


class Run(NamedTuple):
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line and not line.startswith("warning:")]


def run_main(argv: list[str], stdin: str = "") -> Run:
    """``claude-console ARGV`` in this process: exit code, stdout, stderr (argparse exits too)."""
    from console.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdin = old_stdin
    return Run(code, out.getvalue(), err.getvalue())


def file_digest(folder: str | os.PathLike) -> str:
    """Every file under the token folder (names and bytes), lock files aside."""
    h = hashlib.sha256()
    root = Path(folder)
    if root.exists():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def pg_digest(dsn: str) -> str:
    """Every row of the console's tables, as text, in a stable order."""
    import asyncpg

    async def dump() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            parts = []
            for table in ("LiteLLM_ClaudeOAuthTokens", "LiteLLM_ClaudeOAuthAudit",
                          "LiteLLM_ClaudeOAuthPendingLogins"):
                exists = await conn.fetchval("SELECT to_regclass($1)", f'"{table}"')
                if exists:
                    rows = await conn.fetch(f'SELECT t::text AS r FROM "{table}" t ORDER BY 1')
                    parts.append(table + "\n" + "\n".join(r["r"] for r in rows))
            return "\n".join(parts)
        finally:
            await conn.close()

    return hashlib.sha256(asyncio.run(dump()).encode()).hexdigest()


def store_digest(env: dict[str, str]) -> str:
    """The file tier's folder, plus the database when the environment names one."""
    folder = Path(env["CLAUDE_TOKEN_FILE"]).parent
    digest = file_digest(folder)
    if env.get("DATABASE_URL"):
        digest += pg_digest(env["DATABASE_URL"])
    return digest
