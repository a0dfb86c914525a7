"""A QR code drawn locally in half blocks or sextants, black on white whatever the theme.

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

from ..qr import QUIET_ZONE, STYLES, qr_lines, qr_matrix, size_in_cells

DARK = Color.from_rgb(0, 0, 0)
LIGHT = Color.from_rgb(255, 255, 255)
QR_STYLE = Style(color=DARK, bgcolor=LIGHT)


class QRCode(Widget):
    """The QR code of ``data`` drawn in ``drawing`` (``half`` or ``sextant``); ``needed`` is
    the (columns, rows) it must be given. The screen picks the drawing (``console.qr.choose_style``)."""

    DEFAULT_CSS = """
    QRCode {
        width: auto;
        height: auto;
    }
    """
    ALLOW_SELECT = False

    def __init__(self, data: str = "", *, drawing: str = "half", name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._drawing = drawing if drawing in STYLES else "half"
        self._data = ""
        self._matrices: dict[str, list[list[bool]]] = {}
        self._lines: dict[tuple[str, bool], list[str]] = {}
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
        self._matrices = {}
        self._lines = {}

    @property
    def drawing(self) -> str:
        return self._drawing

    @drawing.setter
    def drawing(self, value: str) -> None:
        if value not in STYLES:
            raise ValueError(f"a QR drawing is one of {', '.join(STYLES)}, not {value!r}")
        if value != self._drawing:
            self._drawing = value
            self.refresh(layout=True)

    def matrix_for(self, drawing: str) -> list[list[bool]]:
        """The modules (True = dark) with that drawing's quiet zone."""
        if drawing not in self._matrices:
            self._matrices[drawing] = qr_matrix(self._data, QUIET_ZONE[drawing]) if self._data else []
        return self._matrices[drawing]

    @property
    def matrix(self) -> list[list[bool]]:
        """The modules (True = dark), quiet zone included."""
        return self.matrix_for(self._drawing)

    def needed_for(self, drawing: str) -> Size:
        """The cells the whole code needs in that drawing (0×0 without data)."""
        matrix = self.matrix_for(drawing)
        return Size(*size_in_cells(matrix, drawing)) if matrix else Size(0, 0)

    @property
    def needed(self) -> Size:
        return self.needed_for(self._drawing)

    def fits_in(self, size: Size, drawing: str | None = None) -> bool:
        need = self.needed_for(drawing or self._drawing)
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
        key = (self._drawing, self.paints_dark)
        if key not in self._lines:
            matrix = self.matrix
            self._lines[key] = qr_lines(matrix, key[0], paint_dark=key[1]) if matrix else []
        return self._lines[key]

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
