"""QR codes drawn locally (never by a web service) as half-block text.

Two module rows share one text row: ``▀`` paints the top module, ``▄`` the bottom one,
``█`` both. Painted cells are the dark modules when colours are explicit (dark on light);
without colour we assume a light-on-dark terminal and paint the light modules instead,
so the code scans either way. The quiet zone is ``border`` modules (at least 2).
"""

from __future__ import annotations

_CHARS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_matrix(data: str, border: int = 2) -> list[list[bool]]:
    """The module matrix (True = dark), quiet zone included."""
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=max(2, border))
    code.add_data(data)
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def half_block_lines(matrix: list[list[bool]], *, paint_dark: bool = True) -> list[str]:
    rows = [[cell if paint_dark else not cell for cell in row] for row in matrix]
    if len(rows) % 2:
        rows.append([not paint_dark] * len(rows[0]) if rows else [])
    return ["".join(_CHARS[(top, bottom)] for top, bottom in zip(rows[i], rows[i + 1]))
            for i in range(0, len(rows), 2)]


def size_in_cells(matrix: list[list[bool]]) -> tuple[int, int]:
    """(columns, rows) the half-block drawing needs."""
    return len(matrix[0]), (len(matrix) + 1) // 2


def terminal_qr(data: str, *, color: bool = True) -> list[str]:
    """Lines ready to print: black on white with ANSI colours, or inverted plain blocks."""
    lines = half_block_lines(qr_matrix(data), paint_dark=color)
    if color:
        return [f"\x1b[30;107m{line}\x1b[0m" for line in lines]
    return lines
