"""Only the QR code, using the whole terminal: for windows too small for the login screen."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from ..ui.styles import styles_path
from ..widgets.qr import QRCode


class QRFullScreen(Screen[None]):
    """The authorize URL's QR code and nothing else; esc goes back."""

    CSS_PATH = styles_path("qr.tcss")
    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def compose(self) -> ComposeResult:
        yield QRCode(self.url, id="fullscreen-qr")
        yield Static("esc: back", id="fullscreen-hint")
        yield Static("", id="fullscreen-too-small")

    def on_mount(self) -> None:
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def _fit(self) -> None:
        qr = self.query_one(QRCode)
        need, have = qr.needed, self.size
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
