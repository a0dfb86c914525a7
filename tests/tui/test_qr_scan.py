"""The login screen's QR code scans: rebuilt from the rendered cells, decoded by zxing-cpp.

Nothing here reads the widget's module matrix: the modules come from the characters and
colours that reach the terminal (after Textual's line filters), so a wrong glyph, a
missing colour, a theme that leaks in or a cropped code all fail the decode.
"""

from __future__ import annotations

import pytest
from rich.style import Style

from console.widgets.qr import QRCode

from _login_host import LoginHost
from support.screen_cells import screen_cells
from support.tui import wait_until

zxingcpp = pytest.importorskip("zxingcpp")
Image = pytest.importorskip("PIL.Image")

TOP = set("▀█")
BOTTOM = set("▄█")


def _dark(style: Style, use_fg: bool) -> bool:
    color = style.color if use_fg else style.bgcolor
    assert color is not None and not color.is_default, \
        f"a QR cell has no explicit {'foreground' if use_fg else 'background'} colour: {style}"
    r, g, b = color.get_truecolor()
    return (0.299 * r + 0.587 * g + 0.114 * b) < 128


def rendered_matrix(app, widget: QRCode) -> list[list[bool]]:
    """Module rows (True = dark) rebuilt from the half-block cells in the widget's region."""
    cells = screen_cells(app)
    region = widget.region
    assert region.width and region.height, "the QR widget is not on screen"
    rows: list[list[bool]] = []
    for y in range(region.y, region.bottom):
        top, bottom = [], []
        for ch, style in cells[y][region.x:region.right]:
            assert ch in " ▀▄█", f"unexpected character {ch!r} inside the QR code"
            top.append(_dark(style, ch in TOP))
            bottom.append(_dark(style, ch in BOTTOM))
        rows += [top, bottom]
    return rows


def decode(matrix: list[list[bool]], scale: int = 6, margin: int = 4) -> list[str]:
    size = (len(matrix[0]) + 2 * margin, len(matrix) + 2 * margin)
    image = Image.new("L", size, 255)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                image.putpixel((x + margin, y + margin), 0)
    image = image.resize((size[0] * scale, size[1] * scale), Image.NEAREST)
    # Only QR codes, read as printed: a 1D reader can find a spurious "barcode" in the
    # module pattern, and an inverted read would hide a light-on-dark code.
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    return [result.text for result in found]


def assert_scans(matrix: list[list[bool]], url: str) -> None:
    """Decodes to exactly ``url``, dark on light, with a light quiet zone of 2+ modules."""
    width = len(matrix[0])
    # An odd module count leaves the last half-block row half empty: it is light too.
    for row in matrix[:2] + matrix[-3:]:
        assert not any(row), "the quiet zone above or below the code is not light"
    for row in matrix:
        assert not any(row[:2]) and not any(row[width - 2:]), "the side quiet zone is not light"
    assert decode(matrix) == [url]


@pytest.fixture
def starts(service, monkeypatch):
    """Every LoginStart the service handed to the screen."""
    seen = []
    original = service.start_login

    async def spy(*args, **kwargs):
        start = await original(*args, **kwargs)
        seen.append(start)
        return start

    monkeypatch.setattr(service, "start_login", spy)
    return seen


async def _open_code_stage(pilot, user: str) -> None:
    await pilot.press(*["ctrl+u"], *user, "enter")
    await wait_until(pilot, lambda: pilot.app.screen.stage == "code", "the login screen to show the URL", 2.5)


async def test_login_qr_decodes_to_the_exact_url(service, starts):
    app = LoginHost(service)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_code_stage(pilot, "scan-me")
        widget = app.screen.query_one(QRCode)
        assert_scans(rendered_matrix(app, widget), starts[-1].authorization_url)


async def test_full_screen_qr_decodes_where_the_login_screen_is_too_small(service, starts):
    app = LoginHost(service)
    async with app.run_test(size=(90, 40)) as pilot:
        await _open_code_stage(pilot, "small-terminal")
        assert app.screen.has_class("-too-small")
        assert not app.screen.query_one("#qr-box").display
        await pilot.press("f4")
        await pilot.pause()
        widget = app.screen.query_one(QRCode)
        assert app.screen.id != "login" and widget.id == "fullscreen-qr"
        assert_scans(rendered_matrix(app, widget), starts[-1].authorization_url)


async def test_qr_still_scans_with_no_color(service, starts, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = LoginHost(service)
    assert app.no_color
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_code_stage(pilot, "mono")
        assert_scans(rendered_matrix(app, app.screen.query_one(QRCode)), starts[-1].authorization_url)
