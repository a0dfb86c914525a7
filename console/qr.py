"""QR codes drawn locally (never by a web service) as block-character text.

Two drawings. *half*: two module rows share one text row: ``▀`` paints the top module,
``▄`` the bottom one, ``█`` both; every terminal font has these. *sextant*: a cell holds
2×3 modules, drawn with the sextants of Unicode's Symbols for Legacy Computing
(U+1FB00…U+1FB3B, plus ``▌ ▐ █`` for the three patterns that already had a character);
the same code takes a third fewer rows, which is what lets it fit in 80×24, but only
terminals that draw these characters themselves (or have a font with them) show it.

Painted cells are the dark modules when colours are explicit (dark on light); without
colour we assume a light-on-dark terminal and paint the light modules instead, so the code
scans either way. The quiet zone is 2 modules in half blocks, 1 in sextants (the height
it saves is what makes a version-13 code fit in 24 rows).
"""

from __future__ import annotations

import os
from typing import Mapping

STYLES = ("half", "sextant")
CHOICES = ("auto",) + STYLES
QUIET_ZONE = {"half": 2, "sextant": 1}
CELL = {"half": (1, 2), "sextant": (2, 3)}   # modules per cell: (across, down)

_HALF = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def sextant_char(bits: int) -> str:
    """The character for six sub-blocks; bit 0 top-left, 1 top-right, 2 middle-left, …, 5 bottom-right."""
    if not 0 <= bits < 64:
        raise ValueError("a sextant has six sub-blocks")
    special = {0: " ", 21: "▌", 42: "▐", 63: "█"}
    if bits in special:
        return special[bits]
    # U+1FB00 is pattern 1; the block skips the patterns that had characters already.
    return chr(0x1FB00 + bits - 1 - (bits > 21) - (bits > 42))


SEXTANT_BITS = {sextant_char(bits): bits for bits in range(64)}


def qr_matrix(data: str, border: int = 2) -> list[list[bool]]:
    """The module matrix (True = dark), quiet zone included (at least 1 module)."""
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=max(1, border))
    code.add_data(data)
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def _painted(matrix: list[list[bool]], paint_dark: bool, across: int, down: int) -> list[list[bool]]:
    """The cells to paint, padded with unpainted (light) modules to whole cells."""
    rows = [[cell if paint_dark else not cell for cell in row] for row in matrix]
    width = len(rows[0]) if rows else 0
    width += -width % across
    rows = [row + [not paint_dark] * (width - len(row)) for row in rows]
    while len(rows) % down:
        rows.append([not paint_dark] * width)
    return rows


def half_block_lines(matrix: list[list[bool]], *, paint_dark: bool = True) -> list[str]:
    rows = _painted(matrix, paint_dark, 1, 2)
    return ["".join(_HALF[(top, bottom)] for top, bottom in zip(rows[i], rows[i + 1]))
            for i in range(0, len(rows), 2)]


def sextant_lines(matrix: list[list[bool]], *, paint_dark: bool = True) -> list[str]:
    rows = _painted(matrix, paint_dark, 2, 3)
    lines = []
    for y in range(0, len(rows), 3):
        top, middle, bottom = rows[y], rows[y + 1], rows[y + 2]
        lines.append("".join(
            sextant_char(top[x] | top[x + 1] << 1 | middle[x] << 2 | middle[x + 1] << 3
                         | bottom[x] << 4 | bottom[x + 1] << 5)
            for x in range(0, len(top), 2)))
    return lines


def qr_lines(matrix: list[list[bool]], style: str = "half", *, paint_dark: bool = True) -> list[str]:
    if style == "sextant":
        return sextant_lines(matrix, paint_dark=paint_dark)
    return half_block_lines(matrix, paint_dark=paint_dark)


def size_in_cells(matrix: list[list[bool]], style: str = "half") -> tuple[int, int]:
    """(columns, rows) the drawing in ``style`` needs."""
    across, down = CELL[style]
    return -(-len(matrix[0]) // across), -(-len(matrix) // down)


def sextants_drawable(env: Mapping[str, str] | None = None) -> bool | None:
    """What the environment tells about sextants: True (the terminal draws them), False (it
    cannot: the Linux console, old serial terminals), None (it does not say; over SSH it
    usually does not)."""
    env = os.environ if env is None else env
    term = env.get("TERM", "")
    program = env.get("TERM_PROGRAM", "")
    if term == "linux" or term.startswith(("vt1", "vt2", "cons")) or term == "dumb":
        return False
    if env.get("KITTY_WINDOW_ID") or term in ("xterm-kitty", "xterm-ghostty") or term.startswith("foot"):
        return True
    if program in ("WezTerm", "ghostty", "kitty") or env.get("WT_SESSION"):
        return True
    try:  # VTE (GNOME Terminal, Tilix, …) draws them itself from 0.76 on
        if int(env.get("VTE_VERSION", "0")) >= 7600:
            return True
    except ValueError:
        pass
    return None


def choose_style(requested: str, fits: Mapping[str, bool] | None = None,
                 env: Mapping[str, str] | None = None) -> str:
    """``half`` or ``sextant``. An explicit choice wins. ``auto``: sextants where the terminal is
    known to draw them; half blocks where it is known not to; otherwise half blocks when they fit
    (``fits``: style -> whether that drawing fits the space), else sextants, the smaller."""
    if requested in STYLES:
        return requested
    known = sextants_drawable(env)
    if known is not None:
        return "sextant" if known else "half"
    return "half" if (fits or {}).get("half", True) else "sextant"


def terminal_qr(data: str, *, color: bool = True, style: str = "half") -> list[str]:
    """Lines ready to print: black on white with ANSI colours, or inverted plain blocks."""
    lines = qr_lines(qr_matrix(data, QUIET_ZONE[style]), style, paint_dark=color)
    if color:
        return [f"\x1b[30;107m{line}\x1b[0m" for line in lines]
    return lines
