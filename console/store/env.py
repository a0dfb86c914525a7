"""The environment tier: ``CLAUDE_ACCESS_TOKEN`` and friends, read-only, user ``default``."""

from __future__ import annotations

import os
from typing import Mapping

from ..errors import ConfigError
from ..tokens import HIDDEN, BadValue, TokenRecord, check_values, parse_expires_at
from .base import NOT_CONFIGURED, UP, Tier, TierHealth

ENV_USER = "default"
_VARIABLES = {"access_token": "CLAUDE_ACCESS_TOKEN", "refresh_token": "CLAUDE_REFRESH_TOKEN",
              "expires_at": "CLAUDE_EXPIRES_AT"}


class EnvTier(Tier):
    name = "env"
    writable = False

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env

    @property
    def configured(self) -> bool:
        return bool(self.env.get("CLAUDE_ACCESS_TOKEN"))

    def _record(self) -> TokenRecord | None:
        access = self.env.get("CLAUDE_ACCESS_TOKEN")
        if not access:
            return None
        raw_expiry = self.env.get("CLAUDE_EXPIRES_AT", "").strip()
        try:
            expires_at = parse_expires_at(raw_expiry) if raw_expiry else 0.0
        except ValueError:
            raise ConfigError(f"CLAUDE_EXPIRES_AT: {raw_expiry[:40]!r} is not a number of seconds or "
                              "milliseconds since the epoch between the years 2000 and 2100") from None
        values = dict(access_token=access, refresh_token=self.env.get("CLAUDE_REFRESH_TOKEN") or None,
                      expires_at=expires_at)
        try:
            check_values(values)
        except BadValue as exc:
            field, _, why = str(exc).partition(" ")
            raise ConfigError(f"{_VARIABLES.get(field, field)}: {why}", hint="fix or unset it") from None
        return TokenRecord(user_id=ENV_USER, source=self.name, version=0, **values)

    async def get(self, user_id: str) -> TokenRecord | None:
        return self._record() if user_id == ENV_USER else None

    async def list(self, secrets: bool = False) -> list[TokenRecord]:
        record = self._record()
        if record is None:
            return []
        if not secrets:
            record = record.evolve(access_token=HIDDEN, refresh_token=record.refresh_token and HIDDEN)
        return [record]

    async def health(self) -> TierHealth:
        if self.configured:
            return TierHealth(self.name, UP, "CLAUDE_ACCESS_TOKEN set (user default, read-only)")
        return TierHealth(self.name, NOT_CONFIGURED, "CLAUDE_ACCESS_TOKEN not set")
