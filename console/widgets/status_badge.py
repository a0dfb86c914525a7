"""A token status as a word and a mark, coloured too: the word alone must carry the meaning."""

from __future__ import annotations

from textual.widgets import Static

from ..tokens import Status

LABELS: dict[Status, str] = {
    Status.ACTIVE: "✓ active",
    Status.EXPIRING: "! expiring",
    Status.EXPIRED_REFRESHABLE: "↻ refresh due",
    Status.EXPIRED: "✗ expired",
    Status.NEEDS_LOGIN: "✗ needs login",
    Status.LOCKED: "⊘ locked",
    Status.ACCOUNT_DISABLED: "✗ disabled",
    Status.OAUTH_NOT_ALLOWED: "✗ not allowed",
}
# An active long-lived token (setup token, never refreshed) shows this instead of "✓ active".
LONG_LIVED_LABEL = "✓ long-lived"
# A user whose new token is held locally (rotated, not yet stored) shows this, whatever the status;
# `status` and `health` name the users and why.
HELD_LABEL = "! not stored"
LABEL_WIDTH = max(len(label) for label in [*LABELS.values(), LONG_LIVED_LABEL, HELD_LABEL])

MEANINGS: dict[Status, str] = {
    Status.ACTIVE: "valid for longer than the refresh buffer",
    Status.EXPIRING: "valid, but refreshes on next use",
    Status.EXPIRED_REFRESHABLE: "access token expired; the refresh token can renew it",
    Status.EXPIRED: "expired and no refresh token: log in again",
    Status.NEEDS_LOGIN: "the provider rejected the refresh token: log in again",
    Status.LOCKED: "stored under an encryption key that is not configured: add that key",
    Status.ACCOUNT_DISABLED: "Claude disabled the organization: kept, not refreshed; log in or refresh to retry",
    Status.OAUTH_NOT_ALLOWED: "Claude refuses OAuth for the organization: kept, not refreshed",
}


def status_label(status: Status) -> str:
    return LABELS[status]


def status_class(status: Status) -> str:
    """The CSS class (and component-class suffix) for a status, e.g. ``status-needs_login``."""
    return f"status-{status.value}"


class StatusBadge(Static):
    """One status, styled by ``styles/shared.tcss`` through its ``status-*`` class."""

    def __init__(self, status: Status | None = None, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.status: Status | None = None
        if status is not None:
            self.set_status(status)

    def set_status(self, status: Status) -> None:
        if self.status is not None:
            self.remove_class(status_class(self.status))
        self.status = status
        self.add_class(status_class(status))
        self.update(status_label(status))
