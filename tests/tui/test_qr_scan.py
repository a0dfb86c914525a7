"""The login QR code scans: the screen's cells drawn as pixels, decoded by zxing-cpp.

Nothing here reads the widget's module matrix: the pixels come from the characters and
colours that reach the terminal (after Textual's line filters), drawn at a real cell
aspect (10×20 px, each sextant's sub-blocks where fonts put them, see ``qr_pixels``), so a
wrong glyph, a missing colour, a theme that leaks in or a cropped code all fail the decode.
"""

from __future__ import annotations

import random

import pytest

from console import oauth
from console.config import AUTHORIZE_URL, REDIRECT_URI, Settings
from console.qr import QUIET_ZONE, STYLES, choose_style, qr_lines, qr_matrix, sextant_char
from console.widgets.qr import QR_STYLE, QRCode

from _login_host import LoginHost
from support.screen_cells import screen_cells, screen_text
from support.tui import wait_until

zxingcpp = pytest.importorskip("zxingcpp")
pytest.importorskip("PIL.Image")

from support.qr_pixels import cells_image, decode, ink, is_dark, lines_image, styled_cells, with_margin  # noqa: E402

PLAIN_TERMINAL = {"TERM": "xterm-256color"}  # a terminal that says nothing about sextants


def real_url(rng: random.Random | None = None) -> str:
    """An authorize URL exactly as long as the production one (default endpoints and scopes)."""
    rng = rng or random.Random()
    verifier = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
                       for _ in range(86))
    state = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
                    for _ in range(22))
    return oauth.authorize_url(Settings(), state=state, challenge=oauth.challenge_for(verifier))


def fast_matrix(url: str, border: int) -> list[list[bool]]:
    """The same code (version, error correction L) from zxing-cpp's C++ encoder: the Python
    encoder takes ~0.1 s a code, too slow for a thousand."""
    code = zxingcpp.create_barcode(url, zxingcpp.BarcodeFormat.QRCode, ec_level="L")
    image = code.to_image(scale=1, add_quiet_zones=False)
    n = image.shape[0]
    data = memoryview(image).tobytes()
    width = n + 2 * border
    light = [False] * width
    rows = [light[:] for _ in range(border)]
    rows += [[False] * border + list(map((0).__eq__, data[y * n:(y + 1) * n])) + [False] * border
             for y in range(n)]
    return rows + [light[:] for _ in range(border)]


def draw(matrix: list[list[bool]], style: str):
    """The widget's drawing in its own colours, inside a border of dark terminal cells."""
    return lines_image(qr_lines(matrix, style), ink_dark=is_dark(QR_STYLE.color),
                       bg_dark=is_dark(QR_STYLE.bgcolor))


# -- the glyphs and the geometry -----------------------------------------------------------

def test_each_sextant_pattern_is_the_character_unicode_names_for_it():
    for bits in range(64):
        painted = {(sub, column) for sub, column in ink(sextant_char(bits))}
        for position in range(6):
            row, column = divmod(position, 2)
            sub = (0, 1, 3)[row]  # the first sub-row of that third
            assert ((sub, column) in painted) == bool(bits >> position & 1), (bits, position)


def test_the_real_url_is_short_enough_for_24_sextant_rows():
    url = real_url()
    assert len(url) < 428
    matrix = qr_matrix(url, QUIET_ZONE["sextant"])
    assert len(matrix) == 71  # version 13 (69 modules) and a 1-module quiet zone
    lines = qr_lines(matrix, "sextant")
    assert (len(lines[0]), len(lines)) == (36, 24)


@pytest.mark.parametrize("style", STYLES)
def test_a_thousand_random_real_length_urls_decode(style):
    rng = random.Random(15)
    urls = [real_url(rng) for _ in range(1000)]
    misses = [url for url in urls
              if decode(draw(fast_matrix(url, QUIET_ZONE[style]), style)) != [url]]
    assert len(misses) <= 5, f"{len(misses)} of 1000 did not decode in {style}, e.g. {misses[:1]}"


@pytest.mark.parametrize("style", STYLES)
def test_codes_from_the_console_encoder_decode(style):
    rng = random.Random(1)
    for _ in range(5):
        url = real_url(rng)
        assert decode(draw(qr_matrix(url, QUIET_ZONE[style]), style)) == [url]


def test_auto_uses_half_blocks_where_they_fit_and_listens_to_the_terminal():
    assert choose_style("auto", {"half": True, "sextant": True}, PLAIN_TERMINAL) == "half"
    assert choose_style("auto", {"half": False, "sextant": True}, PLAIN_TERMINAL) == "sextant"
    assert choose_style("auto", {"half": False, "sextant": True}, {"TERM": "linux"}) == "half"
    assert choose_style("auto", {"half": True, "sextant": True},
                        {"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}) == "sextant"
    assert choose_style("half", {"half": False, "sextant": True}, {"TERM_PROGRAM": "WezTerm"}) == "half"
    assert choose_style("sextant", {"half": True, "sextant": True}, {"TERM": "linux"}) == "sextant"


# -- on screen ------------------------------------------------------------------------------

def screen_decodes(app) -> list[str]:
    """The whole screen as pixels (the code among whatever else is drawn), decoded."""
    return decode(cells_image(with_margin(styled_cells(screen_cells(app)))))


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


@pytest.fixture
def real_endpoints(service):
    """The production authorize URL's length (the login is never finished in these tests)."""
    service.settings.authorize_url = AUTHORIZE_URL
    service.settings.redirect_uri = REDIRECT_URI


async def _open_code_stage(pilot, user: str) -> None:
    await pilot.press(*["ctrl+u"], *user, "enter")
    await wait_until(pilot, lambda: pilot.app.screen.stage == "code", "the login screen to show the URL", 2.5)
    await pilot.pause()


async def test_login_qr_decodes_to_the_exact_url_in_half_blocks(service, starts):
    service.settings.qr_style = "half"
    app = LoginHost(service)
    async with app.run_test(size=(120, 42)) as pilot:
        await _open_code_stage(pilot, "scan-me")
        assert app.screen.query_one(QRCode).drawing == "half"
        assert screen_decodes(app) == [starts[-1].authorization_url]


async def test_login_screen_shows_code_countdown_and_paste_field_at_100x30(service, starts, real_endpoints):
    app = LoginHost(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await _open_code_stage(pilot, "hundred")
        screen = app.screen
        assert not screen.has_class("-too-small")
        qr = screen.query_one(QRCode)
        assert qr.drawing == "sextant" and qr.display
        for widget in (qr, screen.query_one("#countdown"), screen.query_one("#paste")):
            region = widget.region
            assert region.height and region.bottom <= 29, f"{widget} is not fully on screen"
        assert screen_decodes(app) == [starts[-1].authorization_url]


@pytest.mark.parametrize("style", ["auto", "sextant"])
async def test_full_screen_qr_decodes_at_80x24(service, starts, real_endpoints, style):
    service.settings.qr_style = style
    app = LoginHost(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_code_stage(pilot, "small-terminal")
        assert app.screen.has_class("-too-small")
        text = screen_text(app)
        assert "This terminal is 80×24" in text and "needs 36×24" in text
        await pilot.press("f4")
        await pilot.pause()
        widget = app.screen.query_one(QRCode)
        assert widget.id == "fullscreen-qr" and widget.display and widget.drawing == "sextant"
        assert screen_decodes(app) == [starts[-1].authorization_url]


async def test_where_the_code_cannot_fit_the_screen_says_the_exact_size(service, starts, real_endpoints):
    service.settings.qr_style = "half"
    app = LoginHost(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_code_stage(pilot, "half-only")
        await pilot.press("f4")
        await pilot.pause()
        assert not app.screen.query_one(QRCode).display
        assert "The QR code needs 73×37 cells; this terminal is 80×24" in screen_text(app)


async def test_the_size_check_follows_the_real_terminal(service, starts, real_endpoints):
    app = LoginHost(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_code_stage(pilot, "grows")
        assert app.screen.has_class("-too-small")
        await pilot.press("f4")
        await pilot.pause()
        await pilot.resize_terminal(120, 45)  # while another screen is on top
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.has_class("-too-small")
        assert "This terminal is" not in screen_text(app)
        assert screen_decodes(app) == [starts[-1].authorization_url]


async def test_qr_still_scans_with_no_color(service, starts, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = LoginHost(service)
    assert app.no_color
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_code_stage(pilot, "mono")
        assert screen_decodes(app) == [starts[-1].authorization_url]
