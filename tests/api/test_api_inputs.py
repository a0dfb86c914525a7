"""Hostile request bodies (issue 13): a lone surrogate or invalid UTF-8 is a 400, never a 500;
user ids follow the engine's one rule."""

from __future__ import annotations

import pytest

from .helpers import AUTH, EXCHANGE


@pytest.mark.parametrize("content,status,words", [
    (b'{"code": "\\ud800"}', 400, "lone surrogate"),
    (b'{"\\udfff": 1}', 400, "lone surrogate"),
    (b'{"code": "c", "user_id": "\\ud800"}', 400, "lone surrogate"),
    (b'{"code": "c", "user_id": "a\\u001b[2J"}', 422, "user_id contains control characters"),
    (b'{"code": "c", "user_id": "a\\u0085"}', 422, "user_id contains control characters"),
    (b'{"code": "c", "user_id": ""}', 422, "user_id is empty"),
    (b'\xed\xa0\x80', 400, "not UTF-8"),
])
async def test_api_bodies_never_500(client, content, status, words):
    response = await client.post(EXCHANGE, content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
