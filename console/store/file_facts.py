"""Usage and profile facts on the file tier: ``T.stem + '.usage.json'`` beside the token file.

Every change is a read-modify-write under one lock file (``locks/_usage.lock``), so the polite
lease (``next_usage_at``) is claimed by exactly one process on this machine per interval. The
token file itself is never opened here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import StorageError
from .fsutil import atomic_write, check_private_file, file_lock

FACTS_FORMAT = "claude-console-usage/1"


class FileFacts:
    """The facts methods of ``FileTier`` (see ``Tier.load_facts``)."""

    path: Path
    lock_dir: Path
    CAN_KEEP_FACTS = True

    @property
    def facts_path(self) -> Path:
        return self.path.parent / f"{self.path.stem}.usage.json"

    def _read_facts(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.facts_path.read_bytes()
            check_private_file(self.facts_path, self.facts_path.stat())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(f"cannot read {self.facts_path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
            users = doc["users"]
            if not isinstance(users, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            # Only remembered answers live here: a damaged file is set aside, never fatal.
            return {}
        return {uid: entry for uid, entry in users.items() if isinstance(entry, dict)}

    def _change_facts(self, change):
        with file_lock(self.lock_dir / "_usage.lock"):
            users = self._read_facts()
            result = change(users)
            payload = json.dumps({"format": FACTS_FORMAT, "users": users}, sort_keys=True)
            atomic_write(self.facts_path, payload.encode())
            return result

    async def load_facts(self, user_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        users = self._read_facts()
        picked = users if user_ids is None else {u: users[u] for u in user_ids if u in users}
        return {uid: {**entry, "user_id": uid} for uid, entry in picked.items()}

    async def update_facts(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        def change(users):
            entry = users.setdefault(user_id, {})
            entry.update({k: v for k, v in changes.items() if k not in ("user_id", "next_usage_at")})
            return {**entry, "user_id": user_id}

        return self._change_facts(change)

    async def update_facts_many(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        def change(users):
            for user_id, one in changes:
                users.setdefault(user_id, {}).update(
                    {k: v for k, v in one.items() if k not in ("user_id", "next_usage_at")})

        self._change_facts(change)

    async def records_of(self, user_ids: list[str]) -> list:
        wanted = set(user_ids)
        return [r for r in await self.list(secrets=True) if r.user_id in wanted]

    async def claim_fetch(self, user_id: str, *, interval: float, owner: str) -> bool:
        def change(users):
            entry = users.setdefault(user_id, {})
            now = time.time()
            if (entry.get("next_usage_at") or 0) > now:
                return False
            entry["next_usage_at"], entry["usage_claimed_by"] = now + interval, owner
            return True

        return self._change_facts(change)

    async def claim_due_usage(self, *, limit: int, interval: float, owner: str,
                              enroll: bool = True) -> list[str]:
        records = [r for r in await self.list() if not r.needs_login and "user:profile" in (r.scopes or [])]

        def change(users):
            now, out = time.time(), []
            for record in records:
                entry = users.setdefault(record.user_id, {})
                if (entry.get("next_usage_at") or 0) <= now:
                    entry["next_usage_at"], entry["usage_claimed_by"] = now + interval, owner
                    out.append(record.user_id)
                    if len(out) >= limit:
                        break
            return out

        return self._change_facts(change)

    async def defer_fetch(self, user_id: str, until: float) -> None:
        def change(users):
            entry = users.setdefault(user_id, {})
            entry["next_usage_at"] = max(entry.get("next_usage_at") or 0, until)

        self._change_facts(change)

    async def drop_facts(self, user_id: str) -> None:
        def change(users):
            users.pop(user_id, None)

        self._change_facts(change)
