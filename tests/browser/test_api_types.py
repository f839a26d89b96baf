"""The dashboard's TypeScript types match what the gateway sends, checked without Node.js.

- The OpenAPI snapshot the types are generated from (web/src/api/openapi.json -> schema.gen.ts, which the REST
  types in web/src/api/types.ts alias) still matches the gateway's live schema for every schema and path the
  dashboard uses.
- The training spec's JSON Schema the New Job form is built from (web/src/api/trainingConfig.schema.json) is
  what the gateway serves at GET /api/training/config-schema.
- What the schema does not describe is compared field by field with its source: the SSE event payloads with
  the gateway's serialiser, the export records with the JSON Schema the exporter publishes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from aragora.training.v1 import trainer_pb2
from services.exporter import formats
from services.gateway.app import create_app
from services.gateway.routers import events, exports

REPO = Path(__file__).resolve().parents[2]
API = REPO / "web" / "src" / "api"
STALE = "the gateway's API changed: run scripts/build_dashboard.sh (regenerates the types; tsc checks them) and commit"

# Every call the client makes (web/src/api/client.ts, events.ts).
CLIENT_CALLS = [
    ("get", "/healthz"),
    ("get", "/api/training/jobs"),
    ("post", "/api/training/jobs"),
    ("get", "/api/training/jobs/counts"),
    ("get", "/api/training/jobs/{job_id}"),
    ("delete", "/api/training/jobs/{job_id}"),
    ("post", "/api/training/jobs/{job_id}/start"),
    ("get", "/api/training/jobs/{job_id}/metrics"),
    ("get", "/api/training/jobs/{job_id}/artifacts"),
    ("get", "/api/training/jobs/{job_id}/artifacts/{name}"),
    ("get", "/api/training/jobs/{job_id}/events"),
    ("get", "/api/training/models"),
    ("get", "/api/training/export/{export_format}"),
    ("post", "/api/training/export/{export_format}"),
    ("get", "/api/training/stats"),
    ("get", "/api/training/config-schema"),
]


def _structure(node):
    """A schema without its prose (titles, descriptions, examples): what a type is made of."""
    if isinstance(node, dict):
        return {k: _structure(v) for k, v in node.items() if k not in ("title", "description", "examples")}
    if isinstance(node, list):
        return [_structure(v) for v in node]
    return node


def _used_schemas() -> list[str]:
    text = (API / "types.ts").read_text() + (API / "schema.check.ts").read_text()
    return sorted(set(re.findall(r"S\['(\w+)'\]", text)))


def test_the_types_snapshot_matches_the_gateway_schema():
    live = create_app().openapi()
    snapshot = json.loads((API / "openapi.json").read_text())
    used = _used_schemas()
    assert len(used) >= 15
    for name in used:
        assert name in live["components"]["schemas"], f"{name} is gone from the gateway's schema; {STALE}"
        assert _structure(snapshot["components"]["schemas"][name]) == _structure(live["components"]["schemas"][name]), (
            f"{name} changed; {STALE}")


def test_every_path_the_client_calls_exists():
    paths = create_app().openapi()["paths"]
    for method, path in CLIENT_CALLS:
        # The artifact path parameter is declared as {name} (a :path converter in the route).
        assert path in paths and method in paths[path], f"{method.upper()} {path} is not in the gateway's schema"


def test_the_form_schema_snapshot_is_what_the_gateway_serves():
    from fastapi.testclient import TestClient

    from services.common.training_spec import config_json_schema

    snapshot = json.loads((API / "trainingConfig.schema.json").read_text())
    assert snapshot == config_json_schema(), (
        f"the training spec changed; {STALE}")
    # Key order matters too: the form shows the parameters in the spec's order.
    assert list(snapshot["properties"]) == snapshot["x-order"]
    with TestClient(create_app()) as client:
        served = client.get("/api/training/config-schema")
    assert served.status_code == 200
    assert served.json() == snapshot


# --- the parts the OpenAPI schema does not describe ----------------------------------------------------------

def _interfaces() -> dict[str, set[str]]:
    """Field names of each interface in types.ts (with the fields of the interface it extends)."""
    text = (API / "types.ts").read_text()
    raw: dict[str, tuple[str | None, set[str]]] = {}
    for m in re.finditer(r"^(?:export )?interface (\w+)(?: extends (\w+))? \{\n(.*?)^\}", text, re.S | re.M):
        fields = set(re.findall(r"^  (\w+)\??:", m.group(3), re.M))
        raw[m.group(1)] = (m.group(2), fields)

    def resolve(name: str) -> set[str]:
        base, fields = raw[name]
        return fields | (resolve(base) if base else set())

    return {name: resolve(name) for name in raw}


def _inline_fields(interface: str, field: str) -> set[str]:
    text = (API / "types.ts").read_text()
    body = re.search(rf"^export interface {interface} \{{\n(.*?)^\}}", text, re.S | re.M).group(1)
    inline = re.search(rf"^  {field}: \{{(.*?)\}};", body, re.M).group(1)
    return set(re.findall(r"(\w+):", inline))


def _event(**kw) -> trainer_pb2.JobEvent:
    ts = Timestamp()
    ts.GetCurrentTime()
    return trainer_pb2.JobEvent(sequence=1, time=ts, message="m", **kw)


def test_sse_event_payloads_match_the_event_types():
    types = _interfaces()
    cases = {
        "StatusEvent": _event(type=trainer_pb2.EVENT_TYPE_STATUS, status_change=trainer_pb2.StatusChange(
            from_status=trainer_pb2.JOB_STATUS_PREPARING, to_status=trainer_pb2.JOB_STATUS_TRAINING)),
        "StepEvent": _event(type=trainer_pb2.EVENT_TYPE_STEP, step=trainer_pb2.StepEvent(step=1, loss=2.0)),
        "CheckpointEvent": _event(type=trainer_pb2.EVENT_TYPE_CHECKPOINT,
                                  checkpoint=trainer_pb2.CheckpointEvent(path="c", step=1)),
        "EvalEvent": _event(type=trainer_pb2.EVENT_TYPE_EVAL,
                            eval=trainer_pb2.EvalEvent(phase="adapter", done=1, total=2)),
        "DownloadEvent": _event(type=trainer_pb2.EVENT_TYPE_DOWNLOAD, download=trainer_pb2.DownloadEvent(
            model="m", phase="downloading", bytes_done=1, bytes_total=2)),
        "MessageEvent": _event(type=trainer_pb2.EVENT_TYPE_WARNING),
    }
    for name, pb_event in cases.items():
        assert set(events.event_data(pb_event)) == types[name], name
    # Every event type the gateway names is one the client listens for.
    ts_types = re.search(r"EVENT_TYPES = \[(.*?)\] as const", (API / "types.ts").read_text()).group(1)
    assert set(re.findall(r"'(\w+)'", ts_types)) == set(events.EVENT_NAMES.values())


def test_export_records_match_the_record_types():
    """The record types against the JSON Schema the exporter publishes (GET /api/training/formats), which its
    own contract test checks every exported record against."""
    types = _interfaces()
    for fmt, interface in (("sft", "SFTRecord"), ("dpo", "DPORecord"), ("gauntlet", "GauntletRecord")):
        schema = formats.json_schema(fmt)
        assert set(schema["properties"]) == types[interface], fmt
        if "metadata" in schema["properties"]:
            ref = schema["properties"]["metadata"]["$ref"].rsplit("/", 1)[-1]
            assert set(schema["$defs"][ref]["properties"]) == _inline_fields(interface, "metadata"), fmt
    # The filters the client can send are the gateway's.
    assert types["ExportFilters"] == set(exports.ALL_FILTERS)
