"""The seed's SDK names, used the way the seed's examples use them."""

import time

import pytest

import console
from console.sdk import seed


@pytest.fixture(autouse=True)
def fresh_singleton(console_env):
    seed.reset_auth_service()
    yield
    seed.reset_auth_service()


async def test_flow_handler_and_service_names(emulator):
    flow = console.ClaudeOAuthFlow()
    url, state = await flow.start_flow()
    approved = emulator.approve(url)
    data = await flow.complete_flow(approved["code"], state)
    assert set(data) >= {"accessToken", "refreshToken", "expiresAt"}

    service = console.get_auth_service()
    assert service is console.get_auth_service()  # a singleton, as in the seed
    token = await console.get_access_token()
    assert token == data["accessToken"]
    assert await console.ensure_authenticated() is True
    headers = console.get_headers()
    assert headers["authorization"] == f"Bearer {token}"
    assert headers["anthropic-beta"] == "oauth-2025-04-20"
    assert await console.quick_authenticate() == token
    await service.aclose()


async def test_seed_service_returns_none_instead_of_raising(emulator):
    service = console.get_auth_service()
    assert await service.get_access_token("nobody") is None
    assert await service.ensure_authenticated("nobody") is False
    with pytest.raises(ValueError, match="authenticate first"):
        seed.ClaudeAuthService().get_headers()
    await service.aclose()


async def test_handler_standalone_and_bound(emulator):
    flow = console.ClaudeOAuthFlow()
    url, state = await flow.start_flow("bob")
    approved = emulator.approve(url)
    data = await flow.complete_flow(approved["pasted"])

    handler = console.ClaudeOAuthHandler(access_token=data["accessToken"], refresh_token=data["refreshToken"],
                                         expires_at=int((time.time() - 10) * 1000))
    assert handler.is_token_expired()
    token = await handler.get_valid_token()
    assert token != data["accessToken"] and not handler.is_token_expired()

    other = console.ClaudeOAuthHandler()
    stored = await other.store_tokens("carol", {"access_token": token, "refresh_token": handler.refresh_token,
                                                "expires_in": 3600})
    assert stored.user_id == "carol"
    assert await other.get_valid_token("carol") == token
    assert other.get_auth_headers()["authorization"] == f"Bearer {token}"
    refreshed = await other.refresh_access_token()
    assert refreshed["accessToken"] != token
    await console.get_auth_service().aclose()


def test_seed_module_paths_exist():
    from console.claude_auth_service import ClaudeAuthService, get_auth_service, quick_authenticate
    from console.claude_oauth_flow import ClaudeOAuthFlow
    from console.claude_oauth_handler import ClaudeOAuthHandler

    assert ClaudeAuthService is console.ClaudeAuthService and issubclass(ClaudeAuthService, console.AuthService)
    assert get_auth_service is console.get_auth_service and quick_authenticate is console.quick_authenticate
    assert ClaudeOAuthFlow is console.ClaudeOAuthFlow and ClaudeOAuthHandler is console.ClaudeOAuthHandler


async def test_handler_store_tokens_goes_through_the_service(emulator):
    # The seed's store_tokens replaces tokens the service already remembers: the write must drop
    # the memory entry (or the old token keeps being served), be audited, and be a compare-and-swap.
    flow = console.ClaudeOAuthFlow()
    url, state = await flow.start_flow("dana")
    first = await flow.complete_flow(emulator.approve(url)["code"], state)
    service = console.get_auth_service()
    assert await service.get_access_token("dana") == first["accessToken"]   # now in memory

    handler = console.ClaudeOAuthHandler(service=service)
    stored = await handler.store_tokens("dana", {"accessToken": "sk-ant-oat01-brought", "refreshToken": "r",
                                                 "expires_in": 3600})
    assert stored.version == 2
    assert await service.get_access_token("dana") == "sk-ant-oat01-brought"
    assert [e.action for e in await service.audit_trail("dana", 2)] == ["store", "login"]
    await service.aclose()
