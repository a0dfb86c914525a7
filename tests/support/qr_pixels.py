"""Terminal cells drawn as a terminal font draws them, then read by zxing-cpp.

A cell is 10×20 px. Block characters are drawn at their true positions: a sextant's six
sub-blocks are two columns of 5 px by three rows cut at 7 and 13 px (thirds of 20, rounded
as fonts do), a half block is cut at 10 px. Which sub-blocks a character paints comes from
its Unicode name (``BLOCK SEXTANT-1246``), not from the code under test. Any other
character is drawn as its background only (text around a code is not part of it).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from rich.style import Style

import zxingcpp
from PIL import Image

CELL_W, CELL_H = 10, 20
SUB_ROWS = (7, 3, 3, 7)  # px: the cuts at 7, 10 and 13 serve both sextants and half blocks
# sextant rows (thirds) and half-block halves, as sub-row indexes
_THIRDS = ((0,), (1, 2), (3,))
_HALVES = ((0, 1), (2, 3))
_BLOCKS = {" ": (), "█": ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)),
           "▀": ((0, 0), (0, 1), (1, 0), (1, 1)), "▄": ((2, 0), (2, 1), (3, 0), (3, 1)),
           "▌": tuple((r, 0) for r in range(4)), "▐": tuple((r, 1) for r in range(4))}


@lru_cache(maxsize=None)
def ink(ch: str) -> tuple[tuple[int, int], ...] | None:
    """The (sub-row, column) parts ``ch`` paints; None for a character that is not a block."""
    if ch in _BLOCKS:
        return _BLOCKS[ch]
    name = unicodedata.name(ch, "")
    if not name.startswith("BLOCK SEXTANT-"):
        return None
    parts = []
    for digit in name.removeprefix("BLOCK SEXTANT-"):
        position = int(digit) - 1        # 1 2 / 3 4 / 5 6
        for sub in _THIRDS[position // 2]:
            parts.append((sub, position % 2))
    return tuple(parts)


def is_dark(color) -> bool:
    r, g, b = color.get_truecolor()
    return (0.299 * r + 0.587 * g + 0.114 * b) < 128


@lru_cache(maxsize=None)
def _cell_rows(ch: str, ink_dark: bool, bg_dark: bool) -> tuple[bytes, bytes, bytes, bytes]:
    """The cell as 4 sub-rows × 2 columns of grey levels (0 dark, 255 light)."""
    painted = set(ink(ch) or ())
    level = {True: 0, False: 255}
    return tuple(bytes(level[ink_dark if (r, c) in painted else bg_dark] for c in range(2))
                 for r in range(4))


def cells_image(cells: list[list[tuple[str, bool, bool]]]) -> Image.Image:
    """``cells``: rows of (character, ink is dark, background is dark) -> the screen's pixels."""
    columns = len(cells[0])
    sub_rows: list[bytes] = []
    for row in cells:
        parts = [_cell_rows(*cell) for cell in row]
        for r in range(4):
            sub_rows.append(b"".join(part[r] for part in parts))
    small = Image.frombytes("L", (2 * columns, len(sub_rows)), b"".join(sub_rows))
    wide = small.resize((columns * CELL_W, len(sub_rows)), Image.NEAREST).tobytes()
    width = columns * CELL_W
    lines = []
    for index in range(len(sub_rows)):
        line = wide[index * width:(index + 1) * width]
        lines.append(line * SUB_ROWS[index % 4])
    return Image.frombytes("L", (width, len(cells) * CELL_H), b"".join(lines))


def styled_cells(cells: list[list[tuple[str, Style]]]) -> list[list[tuple[str, bool, bool]]]:
    """Screen cells (character, style) -> (character, ink dark, background dark). A cell
    without an explicit colour takes the terminal's: light text on a dark background."""
    out = []
    for row in cells:
        line = []
        for ch, style in row:
            fg, bg = style.color, style.bgcolor
            if style.reverse:
                fg, bg = bg, fg
            line.append((ch, is_dark(fg) if fg is not None and not fg.is_default else False,
                         is_dark(bg) if bg is not None and not bg.is_default else True))
        out.append(line)
    return out


def with_margin(cells: list[list[tuple[str, bool, bool]]], margin: int = 2, dark: bool = True):
    """The cells inside a border of empty terminal cells (a dark background by default)."""
    blank = (" ", not dark, dark)
    width = len(cells[0]) + 2 * margin
    rows = [[blank] * width for _ in range(margin)]
    rows += [[blank] * margin + list(row) + [blank] * margin for row in cells]
    rows += [[blank] * width for _ in range(margin)]
    return rows


def decode(image: Image.Image) -> list[str]:
    # Only QR codes, read as printed: a 1D reader can find a spurious "barcode" in the
    # module pattern, and an inverted read would hide a light-on-dark code. The pictures are
    # upright and at scale: rotated and downscaled retries would only cost time.
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False,
                                   try_rotate=False, try_downscale=False)
    return [result.text for result in found]


def lines_image(lines: list[str], *, ink_dark: bool, bg_dark: bool, margin: int = 2,
                margin_dark: bool = True) -> Image.Image:
    """``cells_image`` for lines of one colour pair inside a margin of empty terminal cells:
    the fast path for decoding many codes."""
    tables = [{} for _ in range(4)]
    for line in lines:
        for ch in set(line) - tables[0].keys():
            parts = _cell_rows(ch, ink_dark, bg_dark)
            for r in range(4):
                tables[r][ch] = parts[r]
    edge = b"\x00\x00" if margin_dark else b"\xff\xff"
    side = edge * margin
    columns = len(lines[0]) + 2 * margin
    blank = edge * columns
    sub_rows = [blank] * (4 * margin)
    for line in lines:
        for r in range(4):
            sub_rows.append(side + b"".join(map(tables[r].__getitem__, line)) + side)
    sub_rows += [blank] * (4 * margin)
    small = Image.frombytes("L", (2 * columns, len(sub_rows)), b"".join(sub_rows))
    wide = small.resize((columns * CELL_W, len(sub_rows)), Image.NEAREST).tobytes()
    width = columns * CELL_W
    return Image.frombytes("L", (width, len(sub_rows) // 4 * CELL_H), b"".join(
        wide[i * width:(i + 1) * width] * SUB_ROWS[i % 4] for i in range(len(sub_rows))))
