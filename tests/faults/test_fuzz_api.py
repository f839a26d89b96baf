"""Hostile REST input: schemathesis generates requests for every operation of the gateway's OpenAPI schema
(valid and invalid: wrong types, missing and extra fields, huge and odd strings, out-of-range numbers) and
sends them to the gateway's ASGI app, which talks to the real exporter and trainer gRPC servers. Every
response must be a non-5xx, with the declared content type, matching its schema where the schema declares
one, and every refusal must be the gateway's one error body.

``FUZZ_EXAMPLES`` sets the examples per operation: a few dozen in ``make test``, hundreds in ``make fuzz``;
``FUZZ_AUTH=user`` runs it all with users and roles on (every request with a user's key).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.faults.conftest import BackgroundBackends, auth_settings, fuzz_auth

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.content_type_conformance]


HEADERS: dict[str, str] = {}
"""With ``FUZZ_AUTH`` (users and roles on): the key every request carries."""


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-api")
    url, key = fuzz_auth(root)
    # A keys store of this module's own even without FUZZ_AUTH: POST /api/admin/keys (open on loopback while no
    # key exists) creates one there, turning auth on for the operations fuzzed after it and nowhere else.
    url = url or f"sqlite:///{root}/auth/keys.db"
    exporter_extra, trainer_extra = auth_settings(url)
    servers = BackgroundBackends(root, exporter_extra=exporter_extra, **trainer_extra)
    servers.auth_url = url
    HEADERS.clear()
    if key:
        HEADERS["Authorization"] = f"Bearer {key}"
    yield servers
    servers.close()


@pytest.fixture(scope="module")
def api_schema(backends):
    extra = {"auth_database_url": backends.auth_url} if backends.auth_url else {}
    settings_ = GatewaySettings(exporter_address=backends.exporter.address, trainer_address=backends.trainer.address,
                                rpc_timeout_seconds=10, **extra)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_))


# Every operation of the schema (the schema does not depend on the backends). Schemathesis' own pytest plugin
# does not run under this pytest, so each operation gets its hypothesis test here.
OPERATIONS = [(method.upper(), path) for path, item in create_app().openapi()["paths"].items() for method in item]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_survives_hostile_input(api_schema, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call(timeout=15, headers=HEADERS or None)
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            body = response.json()
            if path.startswith("/v1/"):
                # The OpenAI-compatible surface answers in OpenAI's error shape, which its clients parse.
                error = body.get("error")
                assert isinstance(error, dict) and error.get("message") and error.get("type"), body
                return
            # One error body everywhere else: what failed and, for bad fields, which ones.
            assert isinstance(body.get("detail"), str) and body["detail"], body
            assert isinstance(body.get("code"), str) and body["code"], body

    check()
