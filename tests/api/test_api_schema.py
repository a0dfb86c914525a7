"""Schemathesis against the hand-written OpenAPI document, over a real socket.

Positive and negative cases for every operation (about 20 each, to stay fast): no 5xx, every
status code and content type documented, every body valid against its (closed) schema, the
master key enforced, and no token in any response.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extras")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth,  # noqa: E402
                                               response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)

from console.api import create_api  # noqa: E402
from console.api.openapi import document  # noqa: E402
from console.config import load_settings  # noqa: E402
from console.cli.sandbox import sandbox_env  # noqa: E402

from .helpers import AUTH, KEY, ApiServer, assert_no_tokens  # noqa: E402

schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE,
                                       schemathesis.GenerationMode.NEGATIVE],
                                max_examples=20)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, ignored_auth]


@pytest.fixture(scope="module")
def schema_api(emulator_server, tmp_path_factory):
    """One server for the module: file tier in a fresh folder, a logged-in user to find."""
    folder = tmp_path_factory.mktemp("schema-store")
    env = {**sandbox_env(emulator_server.url, str(folder)), "LITELLM_MASTER_KEY": KEY,
           "CLAUDE_OAUTH_BACKOFF_BASE": "0.01", "CLAUDE_OAUTH_BACKOFF_CAP": "0.05"}
    with ApiServer(create_api(None, load_settings(env=env))) as server:
        yield server.url


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_keeps_its_openapi_document(case, schema_api):
    response = case.call_and_validate(base_url=schema_api, headers=AUTH, checks=CHECKS)
    assert_no_tokens(response.text)
