"""D opens the doctor's checks on a screen: the same lines as `claude-console doctor`."""

from __future__ import annotations

from console.app import ConsoleApp
from console.screens.doctor import DoctorScreen

from support.screen_cells import screen_text
from support.tui import wait_until



async def test_d_shows_the_doctor_checks_and_r_runs_them_again(service, emulator, login):
    await login(service, "alice")
    app = ConsoleApp(service, refresh_interval=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("D")
        await wait_until(pilot, lambda: isinstance(app.screen, DoctorScreen) and app.screen.checks, "the checks", timeout=15)
        text = screen_text(app)
        assert "✓ configuration" in text and "✓ token endpoint" in text and "all checks pass" in text
        same = [(c.name, c.ok) for c in await service.doctor()]  # the CLI's checks (details hold timings)
        assert same == [(c.name, c.ok) for c in app.screen.checks]

        emulator.state.configure(token_moved=True)
        await pilot.press("r")
        await wait_until(pilot, lambda: "1 check failed" in screen_text(app), "the failed check", timeout=15)
        assert "✗ token endpoint" in screen_text(app) and "it has moved" in screen_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, DoctorScreen), "the board again")


async def test_a_moved_host_in_the_configuration_is_notified_at_start(console_env, monkeypatch):
    from console.config import load_settings
    from console.service import AuthService

    monkeypatch.setenv("CLAUDE_OAUTH_TOKEN_URL", "https://console.anthropic.com/v1/oauth/token")
    service = AuthService(load_settings(), face="tui")
    try:
        app = ConsoleApp(service, refresh_interval=60)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.2)
            assert any("console.anthropic.com" in n.message and "platform.claude.com" in n.message
                       for n in app._notifications)
    finally:
        await service.aclose()
