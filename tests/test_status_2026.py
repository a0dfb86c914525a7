"""The statuses Claude's 2026 refusals and long-lived tokens add, as the one status function says."""

from __future__ import annotations

import time

from console.tokens import Status, TokenRecord, token_status
from console.widgets.status_badge import LABEL_WIDTH, LABELS, LONG_LIVED_LABEL, MEANINGS, status_class


def record(**changes) -> TokenRecord:
    base = TokenRecord(user_id="u", access_token="a", refresh_token="r", expires_at=time.time() + 3600,
                       scopes=["user:profile", "user:inference"])
    return base.evolve(**changes)


def test_refused_organizations_have_their_own_status_and_are_not_usable():
    disabled = record(needs_login=True, last_refresh_error="account_disabled: This organization has been disabled.")
    refused = record(needs_login=True, last_refresh_error="oauth_not_allowed: OAuth authentication is ...")
    rejected = record(needs_login=True, last_refresh_error="token refresh rejected: invalid_grant")
    assert token_status(disabled) is Status.ACCOUNT_DISABLED
    assert token_status(refused) is Status.OAUTH_NOT_ALLOWED
    assert token_status(rejected) is Status.NEEDS_LOGIN
    for status in (Status.ACCOUNT_DISABLED, Status.OAUTH_NOT_ALLOWED):
        assert status.blocked and not status.usable and status.urgency == 0


def test_long_lived_tokens_are_active_until_they_expire_and_never_expiring():
    now = time.time()
    long_lived = record(refresh_token=None, scopes=["user:inference"], expires_at=now + 60)
    assert long_lived.long_lived
    assert token_status(long_lived, now, buffer=300) is Status.ACTIVE  # inside the buffer, still active
    assert token_status(long_lived, now + 61) is Status.EXPIRED
    plain = record(refresh_token=None, expires_at=now + 60)  # a full-scope token without refresh token
    assert not plain.long_lived and token_status(plain, now, buffer=300) is Status.EXPIRING


def test_every_status_has_a_word_a_meaning_and_a_colour_class():
    css = open("styles/shared.tcss").read()
    assert len(set(LABELS.values())) == len(Status)
    for status in Status:
        assert len(LABELS[status]) <= LABEL_WIDTH and MEANINGS[status]
        assert f".{status_class(status)} " in css
    assert len(LONG_LIVED_LABEL) <= LABEL_WIDTH


def test_the_statuses_of_many_records_equal_each_records_status():
    """The board's bulk path decides the common case itself: for every kind of record, and
    every moment around its expiry and the buffer, it must agree with ``token_status``."""
    import itertools

    from console.tokens import TokenRecord, token_status, token_statuses

    now = 1_800_000_000.0
    kinds = []
    for refresh, scopes, needs, error in itertools.product(
            ("r", None), (["user:inference"], ["user:inference", "user:profile"]), (False, True),
            (None, "account_disabled: gone", "oauth_not_allowed: no")):
        for left in (-10, 0, 1, 299, 300, 301, 5000):
            kinds.append(TokenRecord("u", "a", refresh, now + left, scopes=scopes, needs_login=needs,
                                     last_refresh_error=error))
    locked = TokenRecord("v", "a", "r", now + 5000)
    locked.locked = "k1"
    kinds.append(locked)
    for buffer in (0.0, 300.0):
        assert token_statuses(kinds, now, buffer) == [token_status(r, now, buffer) for r in kinds]
