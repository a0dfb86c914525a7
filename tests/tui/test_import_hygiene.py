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


def _imports(path) -> set[str]:
    """Absolute names of the console modules one source file imports (``from . import x`` resolved)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()

    def runtime(nodes):   # every node except what sits under ``if TYPE_CHECKING:``
        for node in nodes:
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                yield from runtime(node.orelse)
                continue
            yield node
            yield from runtime(ast.iter_child_nodes(node))

    for node in runtime(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("console")}


def test_tui_modules_import_down_never_sideways_through_the_board():
    # ui/ and widgets/ sit below the screens; a screen never reaches into the board (only app.py does).
    from pathlib import Path

    console = Path(__file__).resolve().parents[2] / "console"
    for folder, banned in (("ui", ("console.screens", "console.app")),
                           ("widgets", ("console.screens", "console.app", "console.ui.host")),
                           ("screens", ("console.screens.board", "console.app"))):
        for path in (console / folder).rglob("*.py"):
            if path.name == "board.py" and folder == "screens":
                continue
            bad = sorted(n for n in _imports(path) if n.startswith(banned))
            assert not bad, f"{path.relative_to(console.parent)} imports {bad}"


def test_the_service_imports_no_transfer_and_no_sdk():
    # Faces call console.transfer with the service; the service must not reach back up to them.
    code = "import console.service, json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not {m for m in loaded if m.startswith(("console.transfer", "console.sdk", "console.cli",
                                                    "console.screens", "console.api"))}
