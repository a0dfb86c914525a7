import pytest

from console.tokens import Status, TokenRecord, format_duration, mask, parse_expires_at, token_status

NOW = 1_800_000_000.0


def rec(**kw):
    base = dict(user_id="u", access_token="sk-ant-oat01-abcdefgh1234", refresh_token="sk-ant-ort01-zzzz9876",
                expires_at=NOW + 3600)
    base.update(kw)
    return TokenRecord(**base)


@pytest.mark.parametrize("left,refresh,needs_login,expected", [
    (3600, "r", False, Status.ACTIVE),
    (301, "r", False, Status.ACTIVE),
    (300, "r", False, Status.EXPIRING),
    (1, "r", False, Status.EXPIRING),
    (0, "r", False, Status.EXPIRED_REFRESHABLE),
    (-5, "r", False, Status.EXPIRED_REFRESHABLE),
    (-5, None, False, Status.EXPIRED),
    (3600, "r", True, Status.NEEDS_LOGIN),
])
def test_one_function_decides_status(left, refresh, needs_login, expected):
    record = rec(expires_at=NOW + left, refresh_token=refresh, needs_login=needs_login)
    assert token_status(record, NOW, 300) is expected
    assert record.status(NOW, 300) is expected


def test_buffer_is_configurable():
    record = rec(expires_at=NOW + 500)
    assert token_status(record, NOW, 300) is Status.ACTIVE
    assert token_status(record, NOW, 600) is Status.EXPIRING


def test_usable_and_urgency():
    assert Status.EXPIRED_REFRESHABLE.usable and not Status.NEEDS_LOGIN.usable and not Status.EXPIRED.usable
    order = sorted(Status, key=lambda s: s.urgency)
    assert order[0] is Status.NEEDS_LOGIN and order[-1] is Status.ACTIVE


def test_mask_never_reveals_the_token():
    token = "sk-ant-oat01-SECRETSECRETSECRET-abcd"
    masked = mask(token)
    assert masked == "sk-ant-oat01-…abcd"
    assert "SECRET" not in masked
    assert mask(None) == "" and mask("short") == "…"


def test_expiry_accepts_seconds_and_milliseconds():
    assert parse_expires_at("1800000000") == 1_800_000_000
    assert parse_expires_at(1_800_000_000_000) == 1_800_000_000
    with pytest.raises(ValueError):
        parse_expires_at("soon")


def test_round_trip_dict():
    record = rec(scopes=["user:inference"], account_email="a@b.c", version=7)
    again = TokenRecord.from_dict({**record.to_dict(), "unknown_field": 1})
    assert again == record


def test_format_duration():
    assert format_duration(7 * 3600 + 59 * 60 + 5) == "7h 59m"
    assert format_duration(250) == "4m 10s"
    assert format_duration(-180) == "-3m 00s"
    assert format_duration(2 * 86400 + 3600) == "2d 1h"


def test_format_time():
    from console.tokens import format_time

    assert format_time(1_800_000_000) == "2027-01-15 08:00:00 UTC"
    assert format_time(None) == "never" and format_time(0) == "never"
