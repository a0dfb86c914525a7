"""The console app with the login screen pushed over the board, as the board's `l` key does.

It keeps what the screen dismissed with (``result``) instead of handing it to the board,
so tests can check the returned record itself.
"""

from __future__ import annotations

import time
from typing import Callable

from console.app import ConsoleApp
from console.screens.login import LoginScreen
from console.service import AuthService

_NOTHING = object()


class LoginHost(ConsoleApp):
    def __init__(self, service: AuthService, *, user_id: str | None = None,
                 clock: Callable[[], float] = time.time, sandbox_url: str | None = None) -> None:
        super().__init__(service, clock=clock, sandbox_url=sandbox_url)
        self._login_user = user_id
        self.result: object = _NOTHING

    @property
    def dismissed(self) -> bool:
        return self.result is not _NOTHING

    async def on_mount(self) -> None:  # ConsoleApp.on_mount runs too (Textual walks the MRO)
        await self.push_screen(LoginScreen(user_id=self._login_user), self._done)

    def _done(self, result) -> None:
        self.result = result
