"""ctrl+l on the login screen's first stage asks for a long-lived token (as `claude setup-token`)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from console.screens.login import LoginScreen

from _login_host import LoginHost
from support.screen_cells import screen_text
from support.tui import wait_until



async def test_ctrl_l_logs_in_with_a_long_lived_token(service, emulator):
    app = LoginHost(service, user_id="carol")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+l")
        assert "Long-lived token: ON" in screen_text(app)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, LoginScreen)
        await wait_until(pilot, lambda: screen.stage == "code", "the URL stage")
        url = screen.start.authorization_url
        assert parse_qs(urlsplit(url).query)["scope"] == ["user:inference"]
        approved = emulator.approve(url, email="carol@example.com")
        screen._submit_code(approved["pasted"])
        await wait_until(pilot, lambda: screen.stage == "done", "the success stage")
    stored = await service.get_record("carol")
    assert stored.long_lived and stored.refresh_token is None and stored.scopes == ["user:inference"]
    assert 364 * 86400 < stored.expires_in() <= 365 * 86400
