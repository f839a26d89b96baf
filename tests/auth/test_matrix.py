"""The access matrix: every REST route (from the gateway's route table) and every RPC (from the proto service
descriptors), called by an admin, the user who owns the job, a viewer, another user (the stranger) and a caller
without a key, gets exactly the answer the rule table below allows:

- ``A`` allowed: past the access checks (whatever the operation then answers: 200, 409 for a cancelled job, 422
  for a bad model...), never 401/403, and never the answer an unknown id gets;
- ``D`` denied: 403 / PERMISSION_DENIED (a role below the route's or RPC's);
- ``H`` hidden: exactly the answer the same caller gets for an id that does not exist (another user's job, or
  its deployment, is not found: 404, never 403);
- ``U`` unauthenticated: 401 / UNAUTHENTICATED (no key).

A route or an RPC without a rule fails the test, so a new one cannot be added without deciding who may call it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc
import pytest
from fastapi.routing import APIRoute
from google.protobuf import descriptor_pool
from starlette.routing import Route

from aragora.training.v1 import exporter_pb2, inference_pb2, model_export_pb2, trainer_pb2
from services.exporter.server import BUNDLED_SAMPLES
from tests.auth.conftest import CALLERS

UNKNOWN_JOB = "job-0000000000000000"
UNKNOWN_MODEL = "no-such-model-zz"
MSG = [{"role": "user", "content": "hi"}]


@dataclass
class Rule:
    expect: str
    """One letter per caller (admin, user, viewer, stranger); the caller without a key gets U on /api/ and /v1/
    routes and A on the open pages."""
    params: dict = field(default_factory=dict)
    json: dict | None = None
    query: dict = field(default_factory=dict)
    content: bytes | None = None
    target: str = ""
    """What the stranger must not see: "job" (the ``job_id`` in the path or ``model`` in the body) or
    "deployment"."""
    open: bool = False


READ_ALL, WRITE, ADMIN_ONLY = "AAAA", "AADA", "ADDD"
READ_JOB, WRITE_JOB = "AAAH", "AADH"
OPEN = Rule("AAAA", open=True)

REST_RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/training"): OPEN,
    ("GET", "/training/{path:path}"): Rule("AAAA", {"path": "jobs"}, open=True),
    ("GET", "/admin/training"): OPEN,
    ("GET", "/admin/training/{path:path}"): Rule("AAAA", {"path": "jobs"}, open=True),
    ("GET", "/api/training/export/{export_format}"): Rule(READ_ALL, {"export_format": "sft"}, query={"limit": 1}),
    ("POST", "/api/training/export/{export_format}"): Rule(ADMIN_ONLY, {"export_format": "sft"},
                                                          query={"limit": 1}),
    ("GET", "/api/training/stats"): Rule(READ_ALL),
    ("GET", "/api/training/formats"): Rule(READ_ALL),
    ("POST", "/api/debates/import"): Rule(ADMIN_ONLY, content=BUNDLED_SAMPLES.read_bytes().splitlines()[0]),
    ("GET", "/api/training/config-schema"): Rule(READ_ALL),
    ("GET", "/api/training/jobs"): Rule(READ_ALL),
    ("GET", "/api/training/jobs/counts"): Rule(READ_ALL),
    ("GET", "/api/training/jobs/{job_id}"): Rule(READ_JOB, target="job"),
    ("POST", "/api/training/jobs"): Rule(WRITE, json={"name": "m", "base_model": UNKNOWN_MODEL}),
    ("POST", "/api/training/jobs/preflight"): Rule(WRITE, json={"name": "m", "base_model": UNKNOWN_MODEL}),
    ("POST", "/api/training/jobs/{job_id}/clone"): Rule(WRITE_JOB, json={"name": "clone"}, target="job"),
    ("POST", "/api/training/jobs/{job_id}/start"): Rule(WRITE_JOB, target="job"),
    ("DELETE", "/api/training/jobs/{job_id}"): Rule(WRITE_JOB, target="job"),
    ("GET", "/api/training/jobs/{job_id}/metrics"): Rule(READ_JOB, target="job"),
    ("GET", "/api/training/jobs/{job_id}/artifacts"): Rule(READ_JOB, target="job"),
    ("GET", "/api/training/jobs/{job_id}/artifacts/{name:path}"): Rule(READ_JOB, {"name": "events.jsonl"},
                                                                       target="job"),
    ("POST", "/api/training/jobs/{job_id}/cancel"): Rule(WRITE_JOB, target="job"),
    ("POST", "/api/training/jobs/{job_id}/complete"): Rule(WRITE_JOB, target="job"),
    ("POST", "/api/training/jobs/{job_id}/export"): Rule(WRITE_JOB, target="job"),
    ("GET", "/api/training/jobs/{job_id}/events"): Rule(READ_JOB, target="job"),
    ("POST", "/api/training/jobs/{job_id}/exports"): Rule(WRITE_JOB, json={"kind": "gguf_f16"}, target="job"),
    ("GET", "/api/training/jobs/{job_id}/exports"): Rule(READ_JOB, target="job"),
    ("GET", "/api/training/jobs/{job_id}/exports/{kind}"): Rule(READ_JOB, {"kind": "gguf_f16"}, target="job"),
    ("DELETE", "/api/training/jobs/{job_id}/exports/{kind}"): Rule(WRITE_JOB, {"kind": "gguf_f16"}, target="job"),
    ("GET", "/api/training/jobs/{job_id}/exports/{kind}/events"): Rule(READ_JOB, {"kind": "gguf_f16"},
                                                                       target="job"),
    ("GET", "/api/training/models"): Rule(READ_ALL),
    ("GET", "/api/training/models/local"): Rule(READ_ALL),
    ("POST", "/api/training/models/pull"): Rule(ADMIN_ONLY, json={"model_id": "no/such-model"}),
    ("DELETE", "/api/training/models/local/{model_id:path}"): Rule(ADMIN_ONLY, {"model_id": "no--such"}),
    ("POST", "/api/training/generate"): Rule(WRITE_JOB, json={"model": "{job}", "messages": MSG, "max_new_tokens": 1},
                                             target="job"),
    ("POST", "/api/training/jobs/{job_id}/compare"): Rule(WRITE_JOB, json={"messages": MSG, "max_new_tokens": 1},
                                                          target="job"),
    ("POST", "/api/training/jobs/{job_id}/deploy"): Rule(WRITE_JOB, json={}, target="job"),
    ("DELETE", "/api/training/jobs/{job_id}/deploy"): Rule(WRITE_JOB, query={"name": "zz"}, target="job"),
    ("GET", "/api/training/deployments"): Rule(READ_ALL),
    ("GET", "/v1/models"): Rule(READ_ALL),
    ("GET", "/v1/models/{model_id:path}"): Rule(READ_JOB, {"model_id": "{deployment}"}, target="deployment"),
    ("POST", "/v1/chat/completions"): Rule(WRITE_JOB, json={"model": "{deployment}", "messages": MSG,
                                                            "max_tokens": 1}, target="deployment"),
    ("GET", "/api/auth/me"): Rule(READ_ALL),
    ("GET", "/api/admin/keys"): Rule(ADMIN_ONLY),
    ("POST", "/api/admin/keys"): Rule(ADMIN_ONLY, json={"name": "made-by-matrix", "role": "viewer"}),
    ("DELETE", "/api/admin/keys/{key_id}"): Rule(ADMIN_ONLY, {"key_id": "000000000000"}),
    ("GET", "/api/admin/audit"): Rule(ADMIN_ONLY),
}


def rest_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its route table (included routers flattened)."""
    out = []

    def walk(routes):
        for r in routes:
            if hasattr(r, "original_router"):
                walk(r.original_router.routes)
            elif isinstance(r, APIRoute | Route):
                out.extend((m, r.path) for m in sorted(r.methods or ()) if m != "HEAD")

    walk(app.routes)
    return out


def _fill(value, job: str, deployment: str):
    if isinstance(value, str):
        return value.replace("{job}", job).replace("{deployment}", deployment)
    if isinstance(value, dict):
        return {k: _fill(v, job, deployment) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, job, deployment) for v in value]
    return value


def call_rest(gateway, world, method: str, path: str, rule: Rule, caller: str, job: str, deployment: str):
    params = {"job_id": job, **_fill(rule.params, job, deployment)}
    url = path
    for name, value in params.items():
        url = url.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    body = _fill(rule.json, job, deployment)
    if isinstance(body, dict) and "name" in body and path.endswith(("/jobs", "/preflight", "/clone", "/keys")):
        body = {**body, "name": f"{body['name']}-{caller}-{job[-4:]}"}  # a name no earlier call took
    r = gateway.request(method, url, headers=world.headers(caller), params=rule.query, json=body,
                        content=rule.content)
    text = r.text
    try:
        detail = r.json().get("detail", "") if r.headers.get("content-type", "").startswith("application/json") \
            else text[:300]
    except (ValueError, AttributeError):
        detail = text[:300]
    return r.status_code, str(detail).replace(job, "<id>").replace(deployment, "<id>")


def test_every_route_has_a_rule(gateway):
    missing = [r for r in rest_routes(gateway.app) if r not in REST_RULES]
    assert not missing, f"routes without an access rule in REST_RULES: {missing}"
    stale = [r for r in REST_RULES if r not in rest_routes(gateway.app)]
    assert not stale, f"rules of routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(REST_RULES), ids=lambda r: f"{r[0]} {r[1]}")
def test_rest_matrix(gateway, world, route):
    method, path = route
    rule = REST_RULES[route]
    expect = dict(zip(CALLERS, rule.expect + ("A" if rule.open else "U"), strict=True))
    for caller in CALLERS:
        target = world.deployment if rule.target == "deployment" else world.job_id
        status, detail = call_rest(gateway, world, method, path, rule, caller, world.job_id, world.deployment)
        what = f"{caller} {method} {path}: {status} {detail}"
        if expect[caller] == "U":
            assert status == 401, what
        elif expect[caller] == "D":
            assert status == 403, what
        else:
            assert status not in (401, 403), what
            if rule.target:
                unknown = (UNKNOWN_MODEL if rule.target == "deployment" else UNKNOWN_JOB)
                job = unknown if rule.target == "job" else world.job_id
                dep = unknown if rule.target == "deployment" else world.deployment
                gone = call_rest(gateway, world, method, path, rule, caller, job, dep)
                gone = (gone[0], gone[1].replace(unknown, "<id>"))
                if expect[caller] == "H":
                    assert (status, detail) == gone, f"{what}: not the answer of an unknown id {gone}"
                    assert status == 404, what
                else:
                    assert (status, detail) != gone, f"{what}: the answer of an unknown id ({target})"


# -- gRPC ---------------------------------------------------------------------------------------------------------

SERVICES = [exporter_pb2.DESCRIPTOR.services_by_name["ExporterService"],
            trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"],
            inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
            model_export_pb2.DESCRIPTOR.services_by_name["ModelExportService"]]
GRPC_RULES: dict[str, tuple[str, dict, str]] = {
    # RPC: (expectation per caller, request fields, target)
    "ExporterService/ImportDebates": (ADMIN_ONLY, {}, ""),
    "ExporterService/ExportSFT": (READ_ALL, {"limit": 1}, ""),
    "ExporterService/ExportDPO": (READ_ALL, {"limit": 1}, ""),
    "ExporterService/ExportGauntlet": (READ_ALL, {"limit": 1}, ""),
    "ExporterService/WriteExport": (ADMIN_ONLY, {}, ""),
    "ExporterService/GetFormats": (READ_ALL, {}, ""),
    "ExporterService/GetExportStats": (READ_ALL, {}, ""),
    "TrainerService/CreateJob": (WRITE, {"name": "g", "base_model": UNKNOWN_MODEL}, ""),
    "TrainerService/StartJob": (WRITE_JOB, {"job_id": "{job}"}, "job"),
    "TrainerService/CancelJob": (WRITE_JOB, {"job_id": "{job}"}, "job"),
    "TrainerService/GetJob": (READ_JOB, {"job_id": "{job}"}, "job"),
    "TrainerService/ListJobs": (READ_ALL, {}, ""),
    "TrainerService/GetJobCounts": (READ_ALL, {}, ""),
    "TrainerService/GetJobMetrics": (READ_JOB, {"job_id": "{job}"}, "job"),
    "TrainerService/GetJobArtifacts": (READ_JOB, {"job_id": "{job}"}, "job"),
    "TrainerService/ReadArtifact": (READ_JOB, {"job_id": "{job}", "name": "events.jsonl"}, "job"),
    "TrainerService/ListBaseModels": (READ_ALL, {}, ""),
    "TrainerService/WatchJob": (READ_JOB, {"job_id": "{job}"}, "job"),
    "TrainerService/CloneJob": (WRITE_JOB, {"job_id": "{job}", "name": "gclone"}, "job"),
    "TrainerService/PreflightJob": (WRITE, {"name": "g", "base_model": UNKNOWN_MODEL}, ""),
    "TrainerService/PullBaseModel": (ADMIN_ONLY, {"model_id": "no/such-model"}, ""),
    "TrainerService/ListLocalModels": (READ_ALL, {}, ""),
    "TrainerService/DeleteLocalModel": (ADMIN_ONLY, {"model_id": "no--such"}, ""),
    "InferenceService/Generate": (WRITE_JOB, {"model": "{deployment}"}, "deployment"),
    "InferenceService/DeployJob": (WRITE_JOB, {"job_id": "{job}"}, "job"),
    "InferenceService/UndeployModel": (WRITE_JOB, {"name": "{deployment}"}, "deployment"),
    "InferenceService/ListDeployments": (READ_JOB, {"job_id": "{job}"}, "job"),
    "ModelExportService/StartExport": (WRITE_JOB, {"job_id": "{job}", "kind": 1}, "job"),
    "ModelExportService/ListExports": (READ_JOB, {"job_id": "{job}"}, "job"),
    "ModelExportService/WatchExport": (READ_JOB, {"job_id": "{job}", "kind": 1}, "job"),
    "ModelExportService/CancelExport": (WRITE_JOB, {"job_id": "{job}", "kind": 1}, "job"),
}
"""UndeployModel runs last among the rules that touch the deployment (the matrix calls it with a caller that
may not, then the owner's call removes it: see ``test_grpc_matrix``)."""


def _methods():
    return [(s, m) for s in SERVICES for m in s.methods]


def test_every_rpc_has_a_rule():
    names = {f"{s.name}/{m.name}" for s, m in _methods()}
    assert names - set(GRPC_RULES) == set(), f"RPCs without an access rule: {sorted(names - set(GRPC_RULES))}"
    assert set(GRPC_RULES) - names == set()


def call_rpc(world, service, method, fields: dict, caller: str, job: str, deployment: str):
    pool = descriptor_pool.Default()
    from google.protobuf import message_factory

    request_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(method.input_type.full_name))
    response_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(method.output_type.full_name))
    request = request_cls(**{k: _fill(v, job, deployment) for k, v in fields.items()})
    if method.name == "Generate":
        request.messages.add(role="user", content="hi")
        request.sampling.max_new_tokens = 1
    address = world.backends.exporter.address if service.name == "ExporterService" else world.backends.trainer.address
    path = f"/{service.full_name}/{method.name}"
    with grpc.insecure_channel(address) as channel:
        kw = dict(request_serializer=request_cls.SerializeToString, response_deserializer=response_cls.FromString)
        try:
            if method.client_streaming:
                call = channel.stream_unary(path, **kw)
                call(iter([request]), metadata=world.metadata(caller), timeout=60)
            elif method.server_streaming:
                for _ in channel.unary_stream(path, **kw)(request, metadata=world.metadata(caller), timeout=60):
                    pass
            else:
                channel.unary_unary(path, **kw)(request, metadata=world.metadata(caller), timeout=60)
        except grpc.RpcError as exc:
            return exc.code(), (exc.details() or "").replace(job, "<id>").replace(deployment, "<id>")
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("rpc", [f"{s.name}/{m.name}" for s, m in _methods()])
def test_grpc_matrix(world, rpc):
    service_name, method_name = rpc.split("/")
    service = next(s for s in SERVICES if s.name == service_name)
    method = service.methods_by_name[method_name]
    expect_letters, fields, target = GRPC_RULES[rpc]
    expect = dict(zip(CALLERS, expect_letters + "U", strict=True))
    # The owner last: a call it may make (UndeployModel) changes what the others would see.
    for caller in ("none", "stranger", "viewer", "admin", "user") if method_name == "UndeployModel" else CALLERS:
        if method_name == "UndeployModel" and caller == "admin":
            continue  # the owner's own call below removes it; the admin's would first
        code, detail = call_rpc(world, service, method, fields, caller, world.job_id, world.deployment)
        what = f"{caller} {rpc}: {code} {detail}"
        if expect[caller] == "U":
            assert code == grpc.StatusCode.UNAUTHENTICATED, what
        elif expect[caller] == "D":
            assert code == grpc.StatusCode.PERMISSION_DENIED, what
        else:
            assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), what
            if target:
                unknown = UNKNOWN_MODEL if target == "deployment" else UNKNOWN_JOB
                gone = call_rpc(world, service, method, fields, caller,
                                unknown if target == "job" else world.job_id,
                                unknown if target == "deployment" else world.deployment)
                gone = (gone[0], gone[1].replace(unknown, "<id>"))
                if expect[caller] == "H":
                    assert (code, detail) == gone, f"{what}: not the answer of an unknown id {gone}"
                    assert code == grpc.StatusCode.NOT_FOUND, what
                else:
                    assert (code, detail) != gone, f"{what}: the answer of an unknown id"
    if method_name == "UndeployModel":  # put it back for the other tests
        world.backends.trainer.inference.deployments.add(world.deployment, world.job_id, "test/tiny-llama")


def test_lists_show_a_user_its_own_jobs_only(gateway, world):
    def ids(caller):
        r = gateway.get("/api/training/jobs", headers=world.headers(caller))
        assert r.status_code == 200, r.text
        return {j["id"] for j in r.json()["jobs"]}

    assert world.job_id in ids("user") and world.job_id in ids("admin") and world.job_id in ids("viewer")
    assert world.job_id not in ids("stranger")
    r = gateway.get("/api/training/jobs", headers=world.headers("user"))
    assert {j["owner"] for j in r.json()["jobs"]} == {"alice"}
    for caller, seen in (("user", True), ("stranger", False), ("admin", True)):
        r = gateway.get("/v1/models", headers=world.headers(caller))
        assert r.status_code == 200
        assert (world.deployment in json.dumps(r.json())) is seen, caller
        r = gateway.get("/api/training/deployments", headers=world.headers(caller))
        assert (world.deployment in r.text) is seen, caller


def test_another_users_job_name_is_free_to_take(gateway, world):
    """A name another user's job has must not tell that it exists: names are unique per owner."""
    body = {"name": "alice-job", "base_model": "test/tiny-llama"}
    r = gateway.post("/api/training/jobs", headers=world.headers("stranger"), json=body)
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "bob"
    r = gateway.post("/api/training/jobs", headers=world.headers("user"), json=body)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
