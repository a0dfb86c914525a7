"""The PostgreSQL tier as a package; import its names from here.

- ``sql``: table names, column lists and every statement
- ``connection``: the shared pool, and what a connection failure means
- ``migrations/``: the schema's ``.sql`` files and the loader that applies them
- ``tier``: ``PostgresTier`` itself: reads, compare-and-swap writes, the cross-replica lock,
  pending logins, the audit trail
- ``bulk``: listing pages, export, COPY dumps and bulk upserts (backups and restores)
- ``rotation``: re-encrypting every row to the first key (``rotate-key``)
- ``due``: claiming the users due for a background refresh
- ``changes``: the change feed (which users changed since a cursor), for live boards
"""

from __future__ import annotations

from .bulk import ListedRecord
from .connection import connect_options, describe_dsn, is_connection_error, lock_key
from .due import CLAIM_DUE, default_owner
from .migrations import MIGRATION_LOCK, Migration, apply_migrations, migrations
from .rotation import rotate_keys
from .sql import (AUDIT, FIELDS, MIGRATIONS, PENDING, SELECT_ALL_HIDDEN, SELECT_ALL_SECRETS, SELECT_ONE,
                  TOKENS, USERS)
from .tier import PostgresTier, writing_as

__all__ = ["AUDIT", "CLAIM_DUE", "FIELDS", "MIGRATIONS", "MIGRATION_LOCK", "PENDING", "SELECT_ALL_HIDDEN",
           "SELECT_ALL_SECRETS", "SELECT_ONE", "TOKENS", "USERS", "ListedRecord", "Migration",
           "PostgresTier", "apply_migrations", "connect_options", "default_owner", "describe_dsn",
           "is_connection_error", "lock_key", "migrations", "rotate_keys", "writing_as"]
