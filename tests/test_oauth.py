import time
from urllib.parse import parse_qs, urlsplit

import pytest

from console import oauth
from console.config import CLIENT_ID, load_settings
from console.errors import InvalidGrant, LoginError, OAuthError, RateLimited, TransientOAuthError

RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector():
    assert oauth.challenge_for(RFC7636_VERIFIER) == RFC7636_CHALLENGE


def test_verifier_is_random_and_well_formed():
    verifiers = {oauth.new_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for v in verifiers:
        assert 43 <= len(v) <= 128
        assert set(v) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        oauth.challenge_for(v)  # accepted
    with pytest.raises(ValueError):
        oauth.challenge_for("too-short")


def test_state_is_16_random_bytes_and_not_the_verifier():
    import base64

    state = oauth.new_state()
    assert len(state) == 22 and len(base64.urlsafe_b64decode(state + "==")) == 16
    assert state != oauth.new_state()


def test_authorize_url_has_every_parameter():
    settings = load_settings(env={})
    url = oauth.authorize_url(settings, state="S", challenge="C")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == settings.authorize_url
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q == {"code": "true", "client_id": CLIENT_ID, "response_type": "code",
                 "redirect_uri": settings.redirect_uri, "scope": settings.scopes,
                 "code_challenge": "C", "code_challenge_method": "S256", "state": "S"}


def test_authorize_url_leaves_colons_and_slashes_unencoded_and_reads_back_the_same():
    from urllib.parse import parse_qsl

    settings = load_settings(env={})
    state, challenge = oauth.new_state(), oauth.challenge_for(oauth.new_verifier())
    url = oauth.authorize_url(settings, state=state, challenge=challenge)
    query = urlsplit(url).query
    assert "%3A" not in query and "%2F" not in query
    assert "redirect_uri=https://platform.claude.com/oauth/code/callback&" in query
    assert len(url) < 428  # a version-13 QR code: 24 sextant rows
    assert dict(parse_qsl(query, strict_parsing=True)) == {
        "code": "true", "client_id": CLIENT_ID, "response_type": "code",
        "redirect_uri": settings.redirect_uri, "scope": settings.scopes, "code_challenge": challenge,
        "code_challenge_method": "S256", "state": state}


def test_authorize_url_still_encodes_what_would_change_the_query():
    settings = load_settings(env={}).replace(redirect_uri="https://cb.example/x?a=1&b=2#f",
                                             scopes="a:b c+d")
    query = urlsplit(oauth.authorize_url(settings, state="S", challenge="C")).query
    values = {k: v[0] for k, v in parse_qs(query).items()}
    assert values["redirect_uri"] == "https://cb.example/x?a=1&b=2#f" and values["scope"] == "a:b c+d"


@pytest.mark.parametrize("pasted,expected", [
    ("abc#def", ("abc", "def")),
    ("  'abc#def'\n", ("abc", "def")),
    ("https://platform.claude.com/oauth/code/callback?code=abc&state=def", ("abc", "def")),
    ("http://127.0.0.1:5555/cb?state=def&code=abc", ("abc", "def")),
    ("abc", ("abc", None)),
])
def test_pasted_forms(pasted, expected):
    assert oauth.parse_pasted(pasted) == expected


@pytest.mark.parametrize("pasted", ["", "   ", "https://x.example/cb?state=s", "two words#x"])
def test_pasted_garbage_is_refused(pasted):
    with pytest.raises(LoginError):
        oauth.parse_pasted(pasted)


# -- against the emulator over real HTTP -------------------------------------------------


async def _tokens(settings, emulator):
    """A fresh token pair straight from the provider."""
    client = oauth.OAuthClient(settings)
    verifier = oauth.new_verifier()
    url = oauth.authorize_url(settings, state="st8", challenge=oauth.challenge_for(verifier))
    approved = emulator.approve(url)
    answer = await client.exchange(approved["code"], state="st8", verifier=verifier,
                                   redirect_uri=settings.redirect_uri)
    return client, answer


async def test_exchange_reads_the_response(settings, emulator):
    client, answer = await _tokens(settings, emulator)
    try:
        assert answer.access_token.startswith("sk-ant-oat01-")
        assert answer.refresh_token.startswith("sk-ant-ort01-")
        assert abs(answer.expires_at - (time.time() + 28800)) < 5
        assert answer.account_email == "sandbox-user@example.com"
        assert "user:inference" in answer.scopes
    finally:
        await client.aclose()


async def test_wrong_verifier_is_invalid_grant(settings, emulator):
    client = oauth.OAuthClient(settings)
    verifier = oauth.new_verifier()
    url = oauth.authorize_url(settings, state="s", challenge=oauth.challenge_for(verifier))
    approved = emulator.approve(url)
    with pytest.raises(InvalidGrant):
        await client.exchange(approved["code"], state="s", verifier=oauth.new_verifier(),
                              redirect_uri=settings.redirect_uri)
    await client.aclose()


async def test_refresh_rotates_and_replay_is_invalid_grant(settings, emulator):
    client, first = await _tokens(settings, emulator)
    second = await client.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    with pytest.raises(InvalidGrant, match="Refresh token not found or invalid"):
        await client.refresh(first.refresh_token)
    assert emulator.stats()["refresh_replays"] == 1
    await client.aclose()


async def test_429_with_retry_after_then_success(settings, emulator):
    client, first = await _tokens(settings, emulator)
    emulator.state.add_fault("refresh", 429, count=1, retry_after=0.15)
    started = time.monotonic()
    answer = await client.refresh(first.refresh_token)
    assert time.monotonic() - started >= 0.15  # retry-after honoured
    assert answer.access_token
    assert emulator.stats()["refresh_requests"] == 2
    await client.aclose()


@pytest.mark.serial  # measures time: not beside another worker's load
async def test_429_asking_for_longer_than_the_cap_gives_up_at_once(settings, emulator):
    client, first = await _tokens(settings, emulator)
    emulator.state.add_fault("refresh", 429, count=1, retry_after=120)
    started = time.monotonic()
    with pytest.raises(RateLimited, match="asks to wait 120s"):
        await client.refresh(first.refresh_token)
    assert time.monotonic() - started < 1 and emulator.stats()["refresh_requests"] == 1
    await client.aclose()


async def test_429_forever_gives_up_bounded(settings, emulator):
    client, first = await _tokens(settings, emulator)
    emulator.state.add_fault("refresh", 429, count=50)
    with pytest.raises(RateLimited) as info:
        await client.refresh(first.refresh_token)
    assert "429" in str(info.value)
    assert emulator.stats()["refresh_requests"] == settings.max_retries + 1
    await client.aclose()


async def test_5xx_retried_then_success(settings, emulator):
    client, first = await _tokens(settings, emulator)
    emulator.state.add_fault("refresh", 503, count=2)
    answer = await client.refresh(first.refresh_token)
    assert answer.access_token and emulator.stats()["refresh_requests"] == 3
    await client.aclose()


async def test_5xx_exhausted_is_transient(settings, emulator):
    client, first = await _tokens(settings, emulator)
    emulator.state.add_fault("refresh", 500, count=10)
    with pytest.raises(TransientOAuthError, match="HTTP 500"):
        await client.refresh(first.refresh_token)
    # The refresh token was never spent: it still works afterwards.
    emulator.state.clear_faults()
    assert (await client.refresh(first.refresh_token)).access_token
    await client.aclose()


async def test_network_error_is_transient(settings):
    client = oauth.OAuthClient(settings.replace(token_url="http://127.0.0.1:1/v1/oauth/token", max_retries=1))
    with pytest.raises(TransientOAuthError, match="cannot reach"):
        await client.refresh("sk-ant-ort01-whatever")
    await client.aclose()


async def test_other_4xx_is_not_terminal_but_clear(settings, emulator):
    client = oauth.OAuthClient(settings.replace(client_id="someone-else"))
    with pytest.raises(OAuthError) as info:
        await client.refresh("sk-ant-ort01-x")
    assert not isinstance(info.value, InvalidGrant)
    assert "client_id" in str(info.value)
    await client.aclose()


async def test_seed_refresh_style(settings, emulator):
    _, first = await _tokens(settings, emulator)
    seed = settings.replace(refresh_style="seed")
    client = oauth.OAuthClient(seed)
    answer = await client.refresh(first.refresh_token)
    assert answer.refresh_token != first.refresh_token
    await client.aclose()
