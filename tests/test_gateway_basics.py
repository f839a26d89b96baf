"""The gateway through its ASGI app, talking real gRPC to real in-process exporter and trainer servers."""

from __future__ import annotations

import grpc

from services.gateway.errors import GRPC_TO_HTTP
from tests.conftest import gateway_client
from tests.support.net import free_port


async def test_formats_through_the_gateway(gateway):
    r = await gateway.get("/api/training/formats")
    assert r.status_code == 200
    formats = r.json()["formats"]
    assert {"sft", "dpo", "gauntlet"} <= set(formats)
    props = formats["sft"]["json_schema"]["properties"]
    assert {"instruction", "input", "output", "metadata"} <= set(props)


async def test_jobs_list_through_the_gateway(gateway):
    r = await gateway.get("/api/training/jobs")
    assert r.status_code == 200
    assert r.json()["jobs"] == []


async def test_healthz_reports_each_backend(gateway):
    r = await gateway.get("/healthz")
    assert r.status_code == 200
    assert r.json()["services"] == {"gateway": "SERVING", "exporter": "SERVING", "trainer": "SERVING"}


async def test_healthz_and_api_when_a_backend_is_down(exporter):
    dead = f"127.0.0.1:{free_port()}"
    async with gateway_client(exporter.address, dead, rpc_timeout_seconds=2) as client:
        r = await client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["services"]["trainer"] == "UNAVAILABLE"
        assert r.json()["services"]["exporter"] == "SERVING"
        r = await client.get("/api/training/jobs")
        assert r.status_code == 503
        assert r.json()["code"] == "UNAVAILABLE"


async def test_openapi_and_docs(gateway):
    r = await gateway.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/training/formats" in paths and "/api/training/jobs" in paths
    r = await gateway.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()


async def test_unknown_route_is_a_json_404(gateway):
    r = await gateway.get("/api/training/nope")
    assert r.status_code == 404
    assert r.json()["detail"]


# The mapping the README's "Errors" section documents: a client's mistake is a 4xx, a backend that is down or
# slow a 503/504, a backend's own failure a 502; never a 500.
DOCUMENTED = {
    "OK": 200, "INVALID_ARGUMENT": 422, "OUT_OF_RANGE": 422, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409, "ABORTED": 409, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504, "INTERNAL": 502, "UNKNOWN": 502, "DATA_LOSS": 502,
}


def test_every_grpc_code_maps_to_its_documented_http_code():
    assert {code.name for code in grpc.StatusCode} == set(DOCUMENTED), "a gRPC code without a documented mapping"
    assert {code.name: http for code, http in GRPC_TO_HTTP.items()} == DOCUMENTED
