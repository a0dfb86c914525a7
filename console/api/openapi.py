"""The API's OpenAPI 3.1 document, written by hand and served at ``/openapi.json``.

Response schemas are closed (``additionalProperties: false``): a field that is not listed
here, a token above all, cannot appear in a response without the schema tests failing.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .schemas import MAX_BODY_BYTES, USER_ID_MAX, USER_ID_PATTERN

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_NNUM = {"type": ["number", "null"]}
_INT = {"type": "integer"}
_USER_ID = {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX, "pattern": USER_ID_PATTERN,
            "description": "The user whose tokens to use; default: the server's default user."}
_STATUSES = ["active", "expiring", "expired_refreshable", "expired", "needs_login", "account_disabled",
             "oauth_not_allowed", "locked", "not_logged_in"]

_REASONS = {
    400: "Bad request: malformed JSON, or the login or code was refused",
    401: "Missing or wrong master key",
    403: "The server runs without a master key, so it hands out no access tokens",
    404: "The user is not logged in",
    409: "The user must log in again (the refresh token was rejected or is missing), or Claude refused "
         "the organization (account_disabled, oauth_not_allowed)",
    413: f"The request body is larger than {MAX_BODY_BYTES} bytes",
    415: "The body is not application/json",
    422: "Unknown, missing or invalid field",
    429: "Too many requests: login starts per client, or access tokens per user",
    502: "The OAuth provider failed or rate-limited us (stored tokens unchanged)",
    503: "A storage tier is unavailable",
}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required, "properties": props}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for code in codes:
        out[str(code)] = _json(_ref("Error"), _REASONS[code])
    if 429 in codes:
        out["429"]["headers"] = {"Retry-After": {"description": "Seconds until a start is allowed",
                                                 "required": True, "schema": _INT}}
    return out


def _body(name: str) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": _ref(name)}},
            "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes; unknown fields are refused."}


_USER_PARAM = {"name": "user_id", "in": "query", "required": False, "schema": _USER_ID}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], error={"type": "string", "description": "One line: what is wrong and what to do"}),
    "LoginStart": _obj(
        ["authorization_url", "state", "user_id", "expires_at", "expires_in"],
        authorization_url={"type": "string", "description": "Open in a browser and approve"},
        state={"type": "string", "description": "Identifies this login; comes back as CODE#STATE"},
        user_id=_STR, expires_at={"type": "number"},
        expires_in={"type": "integer", "description": "Seconds left to finish this login"}),
    "ExchangeRequest": {
        **_obj(["code"],
               code={"type": "string", "minLength": 1, "maxLength": 4096, "pattern": USER_ID_PATTERN,
                     "description": "CODE#STATE as Claude shows it, the callback URL, or the bare code"},
               state={"type": "string", "minLength": 1, "maxLength": 512, "pattern": USER_ID_PATTERN,
                      "description": "The state from /start, when the code does not carry it"},
               user_id=_USER_ID)},
    "ExchangeResponse": _obj(["success", "expires_in", "user_id", "account_email"],
                             success={"const": True}, expires_in=_INT, user_id=_STR, account_email=_NSTR),
    "Status": _obj(
        ["user_id", "authenticated", "status", "expires_in", "needs_refresh", "source", "account_email"],
        user_id=_STR, authenticated={"type": "boolean"}, status={"enum": _STATUSES},
        usable={"type": "boolean"}, expires_in=_INT, expires_at={"type": "number"},
        needs_refresh={"type": "boolean"}, source=_NSTR, account_email=_NSTR, organization=_NSTR,
        scopes={"type": "array", "items": _STR}, last_used=_NNUM, refresh_count=_INT,
        last_refresh_error=_NSTR,
        locked_key={"type": ["string", "null"],
                    "description": "status locked: the id of the key the tokens are under, not configured"},
        long_lived={"type": "boolean", "description": "A setup token: inference only, never refreshed"}),
    "AccessToken": _obj(["access_token", "expires_at"],
                        access_token={"type": "string", "description": "Bearer token for the Claude API"},
                        expires_at={"type": "number", "description": "Seconds since the epoch"}),
    "RefreshRequest": _obj([], user_id=_USER_ID,
                           force={"type": "boolean", "default": True,
                                  "description": "false: refresh only if the token is expiring"}),
    "RefreshResponse": _obj(["success", "user_id", "status", "expires_in", "refresh_count"],
                            success={"const": True}, user_id=_STR, status={"enum": _STATUSES},
                            expires_in=_INT, refresh_count=_INT),
    "LogoutRequest": _obj([], user_id=_USER_ID),
    "LogoutResponse": _obj(["success", "user_id", "logged_out"], success={"const": True}, user_id=_STR,
                           logged_out={"type": "boolean",
                                       "description": "false when nothing was stored for the user"}),
    "Users": _obj(["users", "count"], users={"type": "array", "items": _ref("Status")}, count=_INT),
    "Health": _obj(
        ["status"],
        status={"enum": ["ok", "degraded", "down", "alive"]},
        primary={"type": "string", "description": "The tier writes go to"},
        tiers={"type": "array", "items": _obj(
            ["name", "state"], name=_STR, state={"enum": ["up", "down", "not configured"]},
            detail={"type": "string", "description": "Only with a valid master key"},
            writable={"type": "boolean", "description": "Only with a valid master key"})}),
}

PATHS: dict[str, Any] = {
    "/auth/claude/oauth/start": {"get": {
        "operationId": "startLogin", "summary": "Start a login: the URL to approve and its state",
        "description": "Rate-limited per client.",
        "parameters": [_USER_PARAM],
        "responses": _responses(_json(_ref("LoginStart"), "Login started"), 401, 422, 429, 503)}},
    "/auth/claude/oauth/exchange": {"post": {
        "operationId": "exchangeCode", "summary": "Finish a login with the code Claude showed",
        "requestBody": {**_body("ExchangeRequest"), "required": True},
        "responses": _responses(_json(_ref("ExchangeResponse"), "Logged in"),
                                400, 401, 413, 415, 422, 502, 503)}},
    "/auth/claude/oauth/status": {"get": {
        "operationId": "getStatus", "summary": "Is the user's token usable, and for how long",
        "parameters": [_USER_PARAM],
        "responses": _responses(_json(_ref("Status"), "The user's status (also when not logged in)"),
                                401, 422, 503)}},
    "/auth/claude/oauth/refresh": {"post": {
        "operationId": "refreshToken", "summary": "Refresh the user's access token now",
        "requestBody": _body("RefreshRequest"),
        "responses": _responses(_json(_ref("RefreshResponse"), "Refreshed (or already fresh)"),
                                400, 401, 404, 409, 413, 415, 422, 502, 503)}},
    "/auth/claude/oauth/token": {"get": {
        "operationId": "getAccessToken", "summary": "A valid access token for a sidecar (never the refresh token)",
        "description": "Refreshed first when inside the refresh buffer; the console stays the one refresher. "
                       "Needs the master key (403 when the server runs without one), audited, rate-limited "
                       "per user (429 with Retry-After).",
        "parameters": [_USER_PARAM],
        "responses": _responses(_json(_ref("AccessToken"), "A valid access token"),
                                401, 403, 404, 409, 422, 429, 502, 503)}},
    "/auth/claude/oauth/logout": {"post": {
        "operationId": "logout", "summary": "Delete the user's stored tokens",
        "requestBody": _body("LogoutRequest"),
        "responses": _responses(_json(_ref("LogoutResponse"), "Done"), 400, 401, 413, 415, 422, 503)}},
    "/auth/claude/users": {"get": {
        "operationId": "listUsers", "summary": "Every stored user with status and expiry",
        "responses": _responses(_json(_ref("Users"), "Users, sorted by id"), 401, 422, 503)}},
    "/health": {"get": {
        "operationId": "health", "summary": "Each storage tier's state (no master key needed)",
        "description": "200 when the primary tier is up, else 503. `probe=live` answers 200 while the "
                       "process serves HTTP, without touching storage (for liveness probes). Tier "
                       "details are shown only to callers that send the master key.",
        "security": [],
        "parameters": [{"name": "probe", "in": "query", "required": False,
                        "schema": {"enum": ["live", "ready"]}}],
        "responses": {"200": _json(_ref("Health"), "The primary tier is up"),
                      "422": _json(_ref("Error"), _REASONS[422]),
                      "503": _json(_ref("Health"), "The primary tier is down")}}},
    "/metrics": {"get": {
        "operationId": "metrics", "summary": "Prometheus exposition",
        "responses": {"200": {"description": "Metrics in the Prometheus text format",
                              "content": {"text/plain": {"schema": _STR}}},
                      "401": _json(_ref("Error"), _REASONS[401]),
                      "422": _json(_ref("Error"), _REASONS[422])}}},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "The OpenAPI document"),
                      "401": _json(_ref("Error"), _REASONS[401]),
                      "422": _json(_ref("Error"), _REASONS[422])}}},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "claude-console", "version": __version__,
                 "description": "Claude OAuth tokens over HTTP: log users in, refresh, report status. "
                                "No response carries a refresh token; only /auth/claude/oauth/token "
                                "carries an access token."},
        "security": [{"masterKey": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"masterKey": {
                "type": "http", "scheme": "bearer",
                "description": "LITELLM_MASTER_KEY (or general_settings.master_key)"}},
        },
    }
