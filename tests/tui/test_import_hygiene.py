"""The CLI path never imports Textual (nor the other heavy clients): it keeps `claude-console status` fast.

Each check runs in a fresh interpreter, because this test process has long since imported
everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("textual", "rich", "httpx", "asyncpg", "redis")


def imported_after(code: str) -> set[str]:
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", ["console.cli", "console.service", "console.store",
                                    "console.store.file", "console.store.env"])
def test_headless_modules_do_not_import_textual_or_clients(module):
    loaded = imported_after(f"import {module}")
    assert not loaded & set(HEAVY), f"importing {module} pulled in {sorted(loaded & set(HEAVY))}"


def test_the_file_tier_service_stays_headless_when_used(tmp_path):
    # Building the service on the file tier and listing users must not need Textual either.
    code = (
        "import asyncio, os\n"
        f"os.environ['CLAUDE_TOKEN_FILE'] = {str(tmp_path / 'tokens.json')!r}\n"
        "for name in ('DATABASE_URL', 'REDIS_URL'): os.environ.pop(name, None)\n"
        "from console.service import AuthService\n"
        "async def main():\n"
        "    service = AuthService(face='cli')\n"
        "    await service.list_users(); await service.health(); await service.aclose()\n"
        "asyncio.run(main())\n"
    )
    loaded = imported_after(code)
    assert "textual" not in loaded and "rich" not in loaded


def test_the_probe_can_see_textual():
    # Guards the guard: the same probe does report Textual when it is imported.
    assert "textual" in imported_after("import console.app")


def test_the_service_imports_no_transfer_and_no_sdk():
    # Faces call console.transfer with the service; the service must not reach back up to them.
    code = "import console.service, json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not {m for m in loaded if m.startswith(("console.transfer", "console.sdk", "console.cli",
                                                    "console.screens", "console.api"))}
