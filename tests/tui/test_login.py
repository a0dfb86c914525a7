"""The login screen, driven as an operator would: keys in, screen text out, emulator behind.

The URL is read from the screen (not from the service), approved through the emulator,
and the code is typed into the field; what the screen dismisses with is checked, and so
is what the store holds afterwards.
"""

from __future__ import annotations

import pytest
from textual import events
from textual.widgets import Input

from console.qr import qr_matrix, size_in_cells
from console.screens.login import CHROME_ROWS, PANEL_MIN_WIDTH, LoginScreen
from console.screens.qr_fullscreen import QRFullScreen
from console.tokens import TokenRecord

from _login_host import LoginHost
from support.screen_cells import region_text, screen_text
from support.tui import wait_until


def login_screen(app) -> LoginScreen:
    screen = app.screen
    assert isinstance(screen, LoginScreen), f"expected the login screen, got {screen!r}"
    return screen


async def choose_user(pilot, user: str | None = None) -> None:
    """Type ``user`` into the user field (or keep what it was prefilled with) and press enter."""
    await pilot.press(*(["ctrl+u", *user] if user else []), "enter")
    await wait_until(pilot, lambda: login_screen(pilot.app).stage == "code", "the URL stage")


def url_on_screen(app) -> str:
    """The authorize URL as the operator sees it: the wrapped lines joined back."""
    widget = app.screen.query_one("#url")
    return "".join(region_text(app, widget.region))


def widget_text(app, selector: str) -> str:
    """A widget's words as shown on screen, its wrapped lines joined with spaces."""
    return " ".join(line.strip() for line in region_text(app, app.screen.query_one(selector).region))


async def paste(pilot, text: str, *, typed: bool = False) -> None:
    """Paste ``text`` (as a terminal's bracketed paste, or typed key by key) and press enter."""
    field = pilot.app.screen.query_one("#paste", Input)
    assert field.has_focus, "the paste field should have the focus"
    if typed:
        await pilot.press(*text)
    else:
        pilot.app.post_message(events.Paste(text))
        await pilot.pause()
    assert field.value == text
    await pilot.press("enter")


@pytest.mark.parametrize("form", ["pasted", "callback_url", "code"])
async def test_login_by_typing_the_pasted_code(service, emulator, form):
    typed = form == "pasted"  # one run types everything; the others use a prefilled user id
    app = LoginHost(service, user_id=None if typed else "alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot, "alice" if typed else None)
        url = url_on_screen(app)
        assert url.startswith(f"{emulator.url}/oauth/authorize?") and "code_challenge=" in url
        assert "alice" in screen_text(app) and "expires in 9m" in screen_text(app)
        approved = emulator.approve(url, email="alice@example.com")
        await paste(pilot, approved[form], typed=typed)
        await wait_until(pilot, lambda: login_screen(app).stage == "done", "the success stage")
        text = screen_text(app)
        assert "Logged in user alice" in text and "alice@example.com" in text
        assert "expires   in " in text and "UTC" in text
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.dismissed, "the screen to close")
    record = app.result
    assert isinstance(record, TokenRecord)
    assert (record.user_id, record.account_email) == ("alice", "alice@example.com")
    stored = await service.get_record("alice")
    assert stored is not None and stored.access_token == record.access_token


async def test_wrong_code_shows_the_reason_and_a_retry_works(service, emulator):
    app = LoginHost(service, user_id="bob")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        url = url_on_screen(app)
        approved = emulator.approve(url, email="bob@example.com")
        state = approved["pasted"].split("#", 1)[1]
        await paste(pilot, f"not-the-code#{state}")
        await wait_until(pilot, lambda: "rejected" in screen_text(app), "the failure reason")
        screen = login_screen(app)
        assert screen.stage == "code" and screen.query_one("#paste", Input).value == ""
        message = widget_text(app, "#code-message")
        assert "invalid_grant" in message and "Paste again to retry" in message
        assert url_on_screen(app) == url  # same login: no start over needed
        assert await service.get_record("bob") is None
        await paste(pilot, approved["pasted"])
        await wait_until(pilot, lambda: screen.stage == "done", "the success stage")
        assert "bob@example.com" in screen_text(app)
        await pilot.press("escape")  # after success, esc also returns the record
        await wait_until(pilot, lambda: app.dismissed, "the screen to close")
    assert isinstance(app.result, TokenRecord) and app.result.account_email == "bob@example.com"


async def test_cancel_returns_none_and_stores_nothing(service):
    app = LoginHost(service, user_id="carol")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.dismissed, "the screen to close")
    assert app.result is None
    assert await service.get_record("carol") is None


async def test_cancel_from_the_user_stage(service):
    app = LoginHost(service, user_id="dave")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert login_screen(app).query_one("#user-input", Input).value == "dave"
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.dismissed, "the screen to close")
    assert app.result is None


async def test_defaults_to_the_settings_user_and_lists_existing_users(service, emulator, login):
    await login(service, "erin", email="erin@example.com")
    await login(service, "frank", email="frank@example.com")
    app = LoginHost(service)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = login_screen(app)
        field = screen.query_one("#user-input", Input)
        assert field.value == service.settings.default_user
        await wait_until(pilot, lambda: "frank@example.com" in screen_text(app), "the user list")
        assert "erin@example.com" in screen_text(app) and "active" in screen_text(app)
        await pilot.press("ctrl+u", "f", "r")  # typing narrows the list
        await wait_until(pilot, lambda: "erin@example.com" not in screen_text(app), "the filter")
        await pilot.press("down", "enter")  # into the list, pick frank
        await wait_until(pilot, lambda: screen.stage == "code", "the URL stage")
        assert "Log in user frank" in screen_text(app)
        approved = emulator.approve(url_on_screen(app), email="frank2@example.com")
        await paste(pilot, approved["pasted"])
        await wait_until(pilot, lambda: screen.stage == "done", "the success stage")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.dismissed, "the screen to close")
    assert app.result.user_id == "frank" and app.result.account_email == "frank2@example.com"


async def test_empty_user_id_is_refused_with_a_reason(service):
    app = LoginHost(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+u", "enter")
        await wait_until(pilot, lambda: "Type a user id" in screen_text(app), "the reason")
        assert login_screen(app).stage == "pick"


async def test_countdown_runs_on_the_app_clock_and_says_when_the_login_expired(service, emulator):
    now = [1_900_000_000.0]
    app = LoginHost(service, user_id="gina", clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        deadline = login_screen(app).start.expires_at
        now[0] = deadline - 75
        await wait_until(pilot, lambda: "expires in 1m 15s" in screen_text(app), "the countdown")
        now[0] = deadline + 1
        await wait_until(pilot, lambda: "the login expired" in screen_text(app), "the expiry")
        assert "ctrl+r to start over" in widget_text(app, "#code-message")


async def test_start_over_gives_a_new_url_that_works(service, emulator):
    app = LoginHost(service, user_id="hank")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        first = url_on_screen(app)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: url_on_screen(app) != first, "a new URL")
        approved = emulator.approve(url_on_screen(app), email="hank@example.com")
        await paste(pilot, approved["pasted"])
        await wait_until(pilot, lambda: login_screen(app).stage == "done", "the success stage")


async def test_copy_key_sends_the_url_to_the_clipboard(service):
    app = LoginHost(service, user_id="ivy")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        await pilot.press("f2")
        await pilot.pause()
        assert app.clipboard == url_on_screen(app)


async def test_too_small_terminal_says_how_large_and_offers_the_full_screen_qr(service, emulator):
    app = LoginHost(service, user_id="jack")
    async with app.run_test(size=(80, 24)) as pilot:
        await choose_user(pilot)
        url = url_on_screen(app)
        cols, rows = size_in_cells(qr_matrix(url, 1), "sextant")
        text = screen_text(app)
        assert "This terminal is 80×24" in text
        message = " ".join(widget_text(app, "#too-small").replace("█", " ").split())  # no border
        assert f"needs {cols + PANEL_MIN_WIDTH}×{rows + CHROME_ROWS}" in message
        assert f"F4 shows the code alone (needs {cols}×{rows})" in message
        assert not login_screen(app).query_one("#qr-box").display
        assert not set(text) & (set("▀▄") | set(map(chr, range(0x1FB00, 0x1FB3C))))  # nothing cropped
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, QRFullScreen), "the full-screen QR")
        assert app.screen.query_one("#fullscreen-qr").display
        assert "this terminal is" not in screen_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, LoginScreen), "the login screen")
        assert url_on_screen(app) == url  # the same login, still under way
        approved = emulator.approve(url)
        await paste(pilot, approved["pasted"])
        await wait_until(pilot, lambda: login_screen(app).stage == "done", "the success stage")


async def test_full_screen_qr_shows_only_the_code_when_it_fits(service):
    service.settings.qr_style = "half"
    app = LoginHost(service, user_id="kim")
    async with app.run_test(size=(90, 42)) as pilot:
        await choose_user(pilot)
        assert login_screen(app).has_class("-too-small")
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, QRFullScreen), "the full-screen QR")
        lines = [line for line in screen_text(app).splitlines() if line.strip()]
        qr_rows = [line for line in lines if set(line.strip()) <= set("▀▄█ ")]
        assert len(qr_rows) >= 30 and "esc: back" in lines[-1] and "http" not in screen_text(app)


async def test_from_the_board_l_logs_a_user_in_and_the_board_shows_it_active(service, emulator):
    from console.app import ConsoleApp

    app = ConsoleApp(service)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LoginScreen), "the login screen")
        await choose_user(pilot, "lena")
        approved = emulator.approve(url_on_screen(app), email="lena@example.com")
        await paste(pilot, approved["pasted"])
        await wait_until(pilot, lambda: login_screen(app).stage == "done", "the success stage")
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, LoginScreen), "the board")
        await wait_until(pilot, lambda: any("lena" in line and "active" in line
                                          for line in screen_text(app).splitlines()), "lena's row")


async def test_browser_key_only_where_a_browser_can_open(service, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    app = LoginHost(service, user_id="otto")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        assert "Open browser" not in screen_text(app)  # headless: no key, nothing opened
        await pilot.press("f3")
        await pilot.pause()
        assert opened == []
        monkeypatch.setenv("DISPLAY", ":0")
        login_screen(app).refresh_bindings()
        await wait_until(pilot, lambda: "Open browser" in screen_text(app), "the browser key")
        await pilot.press("f3")
        await wait_until(pilot, lambda: opened, "the browser to be asked")
        assert opened == [url_on_screen(app)]


async def test_f1_shows_the_keys_of_the_login_screen(service):
    from console.screens.modals.help import HelpScreen

    app = LoginHost(service, user_id="pia")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        text = screen_text(app)
        for words in ("Copy URL", "Full-screen QR", "Start over", "Cancel"):
            assert words in text


def links_in(app, selector: str) -> set[str]:
    """The OSC 8 targets of the cells a widget shows."""
    from support.screen_cells import screen_cells

    region = app.screen.query_one(selector).region
    return {style.link for row in screen_cells(app)[region.y:region.bottom]
            for _, style in row[region.x:region.right] if style.link}


async def test_esc_removes_the_pending_login_it_started(service):
    app = LoginHost(service, user_id="quinn")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        state = login_screen(app).start.state
        assert (await service.store.newest_pending("quinn")).state == state
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.dismissed, "the screen to close")
    assert await service.store.newest_pending("quinn") is None
    assert await service.cancel_login(state) is False  # already gone


async def test_f5_shows_the_url_alone_on_one_selectable_block(service):
    from console.screens.qr_fullscreen import URLScreen

    app = LoginHost(service, user_id="rita")
    async with app.run_test(size=(80, 24)) as pilot:
        await choose_user(pilot)
        url = login_screen(app).start.authorization_url
        await pilot.press("f5")  # headless: the app cannot hand the terminal back, so a screen
        await wait_until(pilot, lambda: isinstance(app.screen, URLScreen), "the URL screen")
        shown = region_text(app, app.screen.query_one("#url-alone").region)
        assert "".join(shown) == url and all(len(line) == 80 for line in shown[:-1])
        assert links_in(app, "#url-alone") == {url}  # OSC 8 too
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, LoginScreen), "the login screen")


async def test_the_url_on_the_login_screen_is_a_hyperlink(service):
    app = LoginHost(service, user_id="sam")
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        assert links_in(app, "#url") == {login_screen(app).start.authorization_url}


async def test_sandbox_says_in_one_line_how_to_approve_without_a_browser(service, emulator):
    app = LoginHost(service, user_id="tess", sandbox_url=emulator.url)
    async with app.run_test(size=(160, 50)) as pilot:
        await choose_user(pilot)
        note = region_text(app, app.screen.query_one("#sandbox-note").region)
        hint = " ".join(line.strip() for line in note)
        assert f"curl -sG {emulator.url}/_emulator/approve --data-urlencode" in hint
        # the step it names works: the emulator answers the CODE#STATE to paste
        import httpx

        answer = httpx.get(f"{emulator.url}/_emulator/approve",
                           params={"url": login_screen(app).start.authorization_url}).json()
        await paste(pilot, answer["pasted"])
        await wait_until(pilot, lambda: login_screen(app).stage == "done", "the success stage")


async def test_after_the_login_expired_no_paste_again_hint(service, emulator):
    now = [1_900_000_000.0]
    app = LoginHost(service, user_id="uma", clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_user(pilot)
        now[0] = login_screen(app).start.expires_at + 1
        await wait_until(pilot, lambda: "the login expired" in screen_text(app), "the expiry")
        await paste(pilot, "some-code#" + login_screen(app).start.state)
        await wait_until(pilot, lambda: "✗" in widget_text(app, "#code-message")
                       and "Exchanging" not in widget_text(app, "#code-message"), "the failure")
        message = widget_text(app, "#code-message")
        assert "Paste again" not in message and "ctrl+r to start over" in message


async def test_help_at_the_user_step_lists_the_login_keys_not_the_editing_keys(service):
    from console.screens.modals.help import HelpScreen

    app = LoginHost(service, user_id="vic")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert login_screen(app).query_one("#user-input", Input).has_focus
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        rows = app.screen.rows
        descriptions = [description for _, description in rows]
        assert app.screen.query_one("#help-title").content == "Keys of the login screen (step 1, the user)"
        assert any("Cancel" in d for d in descriptions) and any("Existing users" in d for d in descriptions), rows
        assert not any("cursor" in d.lower() or "delete" in d.lower() for d in descriptions), descriptions
        assert not any("Copy URL" in d for d in descriptions)  # not on offer before the URL exists
        assert [keys for keys, d in rows if "help" in d.lower() or "Every key" in d] == ["f1"]
        assert len(app.screen.query("VerticalScroll")) == 1
