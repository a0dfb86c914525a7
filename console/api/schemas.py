"""Request validation for the HTTP API.

Every refusal is one line naming the field and what is wrong with it. A request is
refused before the service sees it, so a bad request can never change anything stored.
The rules here and the schemas in ``openapi.py`` describe the same fields: keep them
in step (a test checks that they are).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..users import USER_ID_MAX, USER_ID_PATTERN, user_id_problem

MAX_BODY_BYTES = 16 * 1024
_NO_CONTROL = re.compile(USER_ID_PATTERN)  # the engine's user-id rule, for every text field


class RequestRejected(Exception):
    """A request the API refuses as it stands (4xx), with the one line that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Field:
    kind: type
    required: bool = False
    max_len: int = USER_ID_MAX
    min_len: int = 1
    no_control: bool = True
    user_id: bool = False  # checked by the engine's one user-id rule (console.users)

    def check(self, name: str, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise RequestRejected(422, f"{name}: expected true or false, got {_kind(value)}")
            return value
        if not isinstance(value, str):
            raise RequestRejected(422, f"{name}: expected a string, got {_kind(value)}")
        if self.user_id:
            problem = user_id_problem(value)
            if problem is not None:
                raise RequestRejected(422, f"{name} {problem}")
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (\ud800) parses as JSON but is not text
            raise RequestRejected(400, f"{name}: not valid UTF-8 text") from None
        if len(value) < self.min_len:
            raise RequestRejected(422, f"{name}: must not be empty")
        if len(value) > self.max_len:
            raise RequestRejected(422, f"{name}: longer than {self.max_len} characters")
        if self.no_control and not _NO_CONTROL.match(value):
            raise RequestRejected(422, f"{name}: must not contain control characters")
        return value


USER_ID = Field(str, user_id=True)

# Fields of each request, by operation. Query fields are strings only.
START_QUERY = {"user_id": USER_ID}
STATUS_QUERY = {"user_id": USER_ID}
NO_QUERY: dict[str, Field] = {}
EXCHANGE_BODY = {"code": Field(str, required=True, max_len=4096),
                 "state": Field(str, max_len=512),
                 "user_id": USER_ID}
REFRESH_BODY = {"user_id": USER_ID, "force": Field(bool)}
LOGOUT_BODY = {"user_id": USER_ID}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def check_fields(data: dict[str, Any], fields: dict[str, Field], where: str) -> dict[str, Any]:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise RequestRejected(422, f"unknown {where} field {unknown[0]!r} (allowed: {allowed})")
    for name, spec in fields.items():
        if spec.required and name not in data:
            raise RequestRejected(422, f"missing {where} field {name!r}")
    return {name: fields[name].check(name, value) for name, value in data.items()}


def read_query(request, fields: dict[str, Field]) -> dict[str, Any]:
    """The query string as a dict: each field at most once, no unknown fields."""
    items = request.query_params.multi_items()
    seen: dict[str, str] = {}
    for key, value in items:
        if key in seen:
            raise RequestRejected(422, f"query parameter {key!r} is given more than once")
        seen[key] = value
    return check_fields(seen, fields, "query")


async def read_json(request, fields: dict[str, Field], limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The JSON object in the body, checked against ``fields``; an empty body is ``{}``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestRejected(400, "Content-Length is not a number") from None
        if size > limit:
            raise RequestRejected(413, f"the request body is {size} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestRejected(413, f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return check_fields({}, fields, "body")
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise RequestRejected(415, f"the body must be JSON, sent with Content-Type: application/json "
                                   f"(got {ctype or 'no Content-Type'!r})")
    try:
        text = raw.decode("utf-8")  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError:
        raise RequestRejected(400, "the body is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestRejected(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno}") from None
    except (ValueError, RecursionError):
        raise RequestRejected(400, "the body is not valid JSON (or is nested too deeply)") from None
    try:  # "\ud800" is valid JSON but not text: refuse it here, not with a 500 later
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RequestRejected(400, "the body is not valid JSON text: it holds a lone surrogate "
                                   "(a \\uD800-\\uDFFF escape without its pair)") from None
    if not isinstance(data, dict):
        raise RequestRejected(422, f"the body must be a JSON object, got {_kind(data)}")
    return check_fields(data, fields, "body")
