"""Storage tiers and the hierarchy that composes them; ``build_store`` wires them from settings."""

from __future__ import annotations

from ..config import Settings
from ..crypto import Keyring
from .base import AuditEvent, Changes, PendingLogin, Tier, TierHealth
from .hierarchy import Hierarchy

__all__ = ["AuditEvent", "Changes", "PendingLogin", "Tier", "TierHealth", "Hierarchy", "build_store"]


def build_store(settings: Settings, keyring: Keyring | None = None) -> Hierarchy:
    """The tiers the settings ask for, in hierarchy order (database, cache, file, env)."""
    from .env import EnvTier
    from .file import FileTier

    keyring = keyring if keyring is not None else Keyring.from_spec(settings.encryption_key)
    tiers: list[Tier] = []
    if settings.database_enabled:
        from .postgres import PostgresTier  # imported only when configured: asyncpg is slow to import

        tiers.append(PostgresTier(settings.database_url, keyring, pool_size=settings.database_pool_size,
                                  auto_migrate=settings.auto_migrate))
    if settings.redis_url:
        from .cache import RedisCacheTier

        tiers.append(RedisCacheTier(settings.redis_url, keyring, prefix=settings.redis_prefix,
                                    refresh_buffer=settings.refresh_buffer, max_ttl=settings.redis_max_ttl))
    tiers.append(FileTier(settings.token_path, keyring))
    tiers.append(EnvTier())
    return Hierarchy(tiers, allow_file_fallback=settings.allow_file_fallback,
                     confirm_every=settings.memory_cache_ttl or 5.0)
