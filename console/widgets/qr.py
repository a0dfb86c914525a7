"""A QR code drawn locally in half blocks, black on white whatever the theme.

The colours are set on the segments themselves, so no theme, tint or ``$text`` colour can
turn the code into something a phone cannot read. Under ``NO_COLOR`` Textual turns colours
to grey levels, which keeps black on white; only when it also keeps the terminal's own
ANSI colours (no colour at all reaches the screen) do we paint the light modules instead,
assuming the usual light-on-dark terminal (see ``console.qr``).
"""

from __future__ import annotations

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from ..qr import half_block_lines, qr_matrix, size_in_cells

DARK = Color.from_rgb(0, 0, 0)
LIGHT = Color.from_rgb(255, 255, 255)
QR_STYLE = Style(color=DARK, bgcolor=LIGHT)
QUIET_ZONE = 2


class QRCode(Widget):
    """The QR code of ``data``; ``needed`` is the (columns, rows) it must be given."""

    DEFAULT_CSS = """
    QRCode {
        width: auto;
        height: auto;
    }
    """
    ALLOW_SELECT = False

    def __init__(self, data: str = "", *, border: int = QUIET_ZONE, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._border = max(QUIET_ZONE, border)
        self._data = ""
        self._matrix: list[list[bool]] = []
        self._lines: dict[bool, list[str]] = {}
        self._set(data)

    # -- data --------------------------------------------------------------------------

    @property
    def data(self) -> str:
        return self._data

    @data.setter
    def data(self, value: str) -> None:
        self._set(value)
        self.refresh(layout=True)

    def _set(self, value: str) -> None:
        self._data = value or ""
        self._matrix = qr_matrix(self._data, self._border) if self._data else []
        self._lines = {}

    @property
    def matrix(self) -> list[list[bool]]:
        """The modules (True = dark), quiet zone included."""
        return self._matrix

    @property
    def needed(self) -> Size:
        """The cells the whole code needs (0×0 without data)."""
        if not self._matrix:
            return Size(0, 0)
        return Size(*size_in_cells(self._matrix))

    def fits_in(self, size: Size) -> bool:
        need = self.needed
        return need.width <= size.width and need.height <= size.height

    # -- drawing -----------------------------------------------------------------------

    @property
    def paints_dark(self) -> bool:
        """False only when no colour reaches the terminal at all (see the module doc)."""
        try:
            app = self.app
        except Exception:  # not mounted: assume colours
            return True
        return not (app.no_color and app.native_ansi_color)

    def lines(self) -> list[str]:
        paint_dark = self.paints_dark
        if paint_dark not in self._lines:
            self._lines[paint_dark] = half_block_lines(self._matrix, paint_dark=paint_dark) \
                if self._matrix else []
        return self._lines[paint_dark]

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self.needed.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.needed.height

    def render_line(self, y: int) -> Strip:
        lines = self.lines()
        width = self.size.width
        if y >= len(lines):
            return Strip.blank(width)
        style = QR_STYLE if self.paints_dark else Style()
        return Strip([Segment(lines[y], style)], len(lines[y])).crop_extend(0, width, None)
