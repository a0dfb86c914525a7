"""Only the QR code, using the whole terminal: for windows too small for the login screen.
And only the URL, for a mouse selection where the app cannot hand the terminal back."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from ..qr import STYLES, choose_style
from ..ui.styles import styles_path
from ..widgets.qr import QRCode


class QRFullScreen(Screen[None]):
    """The authorize URL's QR code and nothing else; esc goes back."""

    CSS_PATH = styles_path("qr.tcss")
    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, url: str, qr_style: str = "auto") -> None:
        super().__init__()
        self.url = url
        self.qr_style = qr_style

    def compose(self) -> ComposeResult:
        yield QRCode(self.url, id="fullscreen-qr")
        yield Static("esc: back", id="fullscreen-hint")
        yield Static("", id="fullscreen-too-small")

    def on_mount(self) -> None:
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self._fit()

    def _fit(self) -> None:
        qr = self.query_one(QRCode)
        have = self.app.size  # the terminal's own size, whatever the layout thinks
        qr.drawing = choose_style(self.qr_style, {style: qr.fits_in(have, style) for style in STYLES})
        need = qr.needed
        fits = qr.fits_in(have)
        qr.display = fits
        self.query_one("#fullscreen-hint").display = fits and have.height > need.height
        message = self.query_one("#fullscreen-too-small", Static)
        message.display = not fits
        if not fits:
            message.update(f"The QR code needs {need.width}×{need.height} cells; this terminal is "
                           f"{have.width}×{have.height}. Enlarge the window or make the font smaller, "
                           "or copy the URL from the login screen (esc: back).")

    def action_back(self) -> None:
        self.dismiss(None)


class URLScreen(Screen[None]):
    """The URL alone from the first column, nothing around it, so a selection takes only it."""

    BINDINGS = [Binding("escape,q,enter", "back", "Back")]
    DEFAULT_CSS = """
    URLScreen #url-alone { width: 1fr; height: auto; text-overflow: fold; }
    URLScreen #url-alone-hint { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def compose(self) -> ComposeResult:
        yield Static(Text(self.url, style=Style(link=self.url)), id="url-alone")
        yield Static("Select the URL with the mouse (shift-drag in most terminals); esc: back.",
                     id="url-alone-hint")

    def action_back(self) -> None:
        self.dismiss(None)
