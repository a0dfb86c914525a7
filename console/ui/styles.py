"""The one lookup for the TUI's stylesheets: every screen names its sheet through ``styles_path``.

The design card keeps ``styles/`` at the top of a checkout; installed wheels carry it as
``console/styles`` (hatch force-include), so the folder is looked for in both places.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent
_CANDIDATES = (_PACKAGE / "styles", _PACKAGE.parent / "styles")


def styles_dir() -> Path:
    for folder in _CANDIDATES:
        if (folder / "shared.tcss").is_file():
            return folder
    raise FileNotFoundError("the console's styles folder is missing (looked in "
                            + ", ".join(str(f) for f in _CANDIDATES) + "); reinstall claude-console")


def styles_path(name: str) -> Path:
    """The path of one stylesheet, e.g. ``styles_path("board.tcss")``."""
    return styles_dir() / name


def stylesheets() -> list[Path]:
    """Every stylesheet, the shared one first: screens added later are styled without wiring."""
    folder = styles_dir()
    rest = sorted(p for p in folder.glob("*.tcss") if p.name != "shared.tcss")
    return [folder / "shared.tcss", *rest]
