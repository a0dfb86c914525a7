import pytest

from console.errors import ConfigError
from console.store.env import EnvTier


@pytest.mark.parametrize("raw,expected", [("1900000000", 1_900_000_000), ("1900000000000", 1_900_000_000)])
async def test_env_tier_reads_default_user(raw, expected):
    tier = EnvTier({"CLAUDE_ACCESS_TOKEN": "sk-ant-oat01-e", "CLAUDE_REFRESH_TOKEN": "sk-ant-ort01-e",
                    "CLAUDE_EXPIRES_AT": raw})
    record = await tier.get("default")
    assert record.expires_at == expected and record.source == "env" and record.version == 0
    assert await tier.get("alice") is None
    assert not tier.writable
    with pytest.raises(NotImplementedError):
        await tier.put(record)
    assert (await tier.list())[0].access_token == "<hidden>"


async def test_env_tier_absent_and_bad_expiry():
    assert await EnvTier({}).get("default") is None
    assert (await EnvTier({}).health()).state == "not configured"
    with pytest.raises(ConfigError, match="CLAUDE_EXPIRES_AT"):
        await EnvTier({"CLAUDE_ACCESS_TOKEN": "x", "CLAUDE_EXPIRES_AT": "tomorrow"}).get("default")
