"""Import from Claude Code, the environment and the seed's token file; export in the seed's format."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from console.errors import NotLoggedIn, UsageError
from console.sdk.seed import ClaudeAuthService
from console.store.file import FileTier
from console.transfer import export_tokens, import_tokens

MS = 1000


def write_json(path: Path, data, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.chmod(path, mode)
    return path


def claude_code_credentials(access: str, refresh: str, expires_at: float) -> dict:
    return {"claudeAiOauth": {"accessToken": access, "refreshToken": refresh,
                              "expiresAt": int(expires_at * MS), "scopes": ["user:inference", "user:profile"],
                              "subscriptionType": "max"}}


async def test_import_claude_code_from_the_default_path(service, console_env):
    expires = time.time() + 3 * 3600
    write_json(Path(console_env["HOME"]) / ".claude" / ".credentials.json",
               claude_code_credentials("sk-ant-oat01-from-claude-code", "sk-ant-ort01-cc", expires))
    result = await import_tokens(service, "claude-code", user_id="alice")
    assert result.changed and result.origin.endswith(".claude/.credentials.json")
    record = await service.get_record("alice")
    assert record.access_token == "sk-ant-oat01-from-claude-code"
    assert record.refresh_token == "sk-ant-ort01-cc"
    assert record.expires_at == pytest.approx(int(expires * MS) / MS)   # milliseconds became seconds
    assert record.scopes == ["user:inference", "user:profile"] and record.subscription_type == "max"
    assert record.source == "file"
    trail = await service.audit_trail("alice", 1)
    assert trail[0].action == "import" and "claude-code" in trail[0].detail
    assert "sk-ant" not in trail[0].detail


async def test_import_claude_code_errors(service, tmp_path):
    with pytest.raises(UsageError, match="Claude Code's credentials are not at") as info:
        await import_tokens(service, "claude-code")
    assert "Keychain" in str(info.value)
    no_login = write_json(tmp_path / "creds.json", {"mcpOAuth": {}})
    with pytest.raises(UsageError, match="no claudeAiOauth"):
        await import_tokens(service, "claude-code", str(no_login))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UsageError, match="not JSON"):
        await import_tokens(service, "claude-code", str(broken))
    assert await service.list_users() == []


@pytest.mark.parametrize("expires", ["ms", "s"])
async def test_import_env(service, monkeypatch, expires):
    at = time.time() + 3600
    monkeypatch.setenv("CLAUDE_ACCESS_TOKEN", "sk-ant-oat01-from-env")
    monkeypatch.setenv("CLAUDE_REFRESH_TOKEN", "sk-ant-ort01-from-env")
    monkeypatch.setenv("CLAUDE_EXPIRES_AT", str(int(at * MS) if expires == "ms" else int(at)))
    result = await import_tokens(service, "env", user_id="bob")
    assert result.origin == "environment"
    record = await service.get_record("bob")
    assert (record.access_token, record.refresh_token, record.source) == \
        ("sk-ant-oat01-from-env", "sk-ant-ort01-from-env", "file")
    assert record.expires_at == pytest.approx(at, abs=1)


async def test_import_env_without_a_token(service, monkeypatch):
    monkeypatch.delenv("CLAUDE_ACCESS_TOKEN", raising=False)
    with pytest.raises(UsageError, match="CLAUDE_ACCESS_TOKEN is not set"):
        await import_tokens(service, "env")


async def test_import_seed_file_and_a_working_refresh(service, login, emulator, tmp_path):
    # A real token set: exported from one user, imported as another; the provider accepts it.
    await login(service, "source")
    exported = tmp_path / "seed.json"
    await export_tokens(service, exported, "source")
    result = await import_tokens(service, "file", str(exported), "copy")
    original = await service.get_record("source")
    copy = await service.get_record("copy")
    assert (copy.access_token, copy.refresh_token) == (original.access_token, original.refresh_token)
    assert copy.expires_at == pytest.approx(original.expires_at, abs=1)
    assert result.changed
    refreshed = await service.refresh("copy", force=True)
    assert refreshed.access_token != original.access_token
    assert emulator.stats()["refresh_requests"] == 1


async def test_import_file_refuses_our_own_multi_user_file(service, tmp_path):
    ours = write_json(tmp_path / "tokens.json", {"format": "claude-console/1", "users": {}})
    with pytest.raises(UsageError, match="multi-user"):
        await import_tokens(service, "file", str(ours))
    with pytest.raises(UsageError, match="does not exist"):
        await import_tokens(service, "file", str(tmp_path / "nope.json"))
    no_token = write_json(tmp_path / "empty.json", {"refreshToken": "x"})
    with pytest.raises(UsageError, match="no access token"):
        await import_tokens(service, "file", str(no_token))


async def test_import_never_replaces_a_later_token_unless_forced(service, tmp_path):
    now = time.time()
    later = write_json(tmp_path / "later.json", {"accessToken": "sk-ant-oat01-later", "refreshToken": "r1",
                                                 "expiresAt": int(now + 7200)})
    earlier = write_json(tmp_path / "earlier.json", {"accessToken": "sk-ant-oat01-earlier", "refreshToken": "r2",
                                                     "expiresAt": int(now + 600)})
    await import_tokens(service, "file", str(later), "u")
    with pytest.raises(UsageError, match="expires later"):
        await import_tokens(service, "file", str(earlier), "u")
    assert (await service.get_record("u")).access_token == "sk-ant-oat01-later"
    again = await import_tokens(service, "file", str(later), "u")
    assert not again.changed
    forced = await import_tokens(service, "file", str(earlier), "u", force=True)
    assert forced.changed and (await service.get_record("u")).access_token == "sk-ant-oat01-earlier"
    assert [e.action for e in await service.audit_trail("u", 10)] == ["import", "import"]


async def test_export_is_0600_in_the_seed_format(service, login, tmp_path, monkeypatch):
    record = await login(service, "alice")
    target = tmp_path / "shared" / "alice.json"
    target.parent.mkdir(mode=0o755)
    saved = await export_tokens(service, target, "alice")
    assert saved.access_token == record.access_token
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    data = json.loads(target.read_text())
    assert data["accessToken"] == record.access_token and data["refreshToken"] == record.refresh_token
    assert data["expiresAt"] == int(record.expires_at)
    # The seed's reader takes it as it stands: the file tier as user default, and the seed SDK.
    seen = await FileTier(target).get("default")
    assert (seen.access_token, seen.refresh_token) == (record.access_token, record.refresh_token)
    monkeypatch.delenv("CLAUDE_TOKEN_ENCRYPTION_KEY", raising=False)
    seed = ClaudeAuthService(token_file=target)
    try:
        assert await seed.get_access_token() == record.access_token
    finally:
        await seed.aclose()
    assert (await service.audit_trail("alice", 1))[0].action == "export"


async def test_export_errors(service, login, tmp_path):
    with pytest.raises(NotLoggedIn, match="nothing to export"):
        await export_tokens(service, tmp_path / "x.json", "ghost")
    assert not (tmp_path / "x.json").exists()
    await login(service, "alice")
    existing = tmp_path / "keep.json"
    existing.write_text("keep me")
    with pytest.raises(UsageError, match="already exists"):
        await export_tokens(service, existing, "alice")
    assert existing.read_text() == "keep me"
    await export_tokens(service, existing, "alice", force=True)
    assert json.loads(existing.read_text())["accessToken"].startswith("sk-ant-")
