"""Aragora's SDKs (an0mium/aragora): the Python SDK's training namespace
(sdk/python/aragora_sdk/namespaces/training.py, with AragoraClient's headers and _handle_error_response from
sdk/python/aragora_sdk/client.py), the TypeScript SDK's (sdk/typescript/src/namespaces/training.ts), both on
Aragora's server paths /api/v1/training, and the frontend's client class
(aragora/live/src/lib/aragora-client.ts TrainingAPI) on /api/training."""

from __future__ import annotations

import json

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from tests.compat.conftest import BROWSER_FETCH, PYTHON_SDK
from tests.trainer.conftest import TINY

pytestmark = pytest.mark.asyncio


def sdk_error_message(r) -> str:
    """client.py _handle_error_response: ``body.get("error", body.get("message", response.text))``."""
    body = r.json()
    return body.get("error", body.get("message", r.text))


async def test_python_sdk_export_sft_dpo_gauntlet(aragora):
    """training.py TrainingAPI.export_sft / export_dpo / export_gauntlet: GET /api/v1/training/export/X."""
    r = await aragora.get("/api/v1/training/export/sft", params={"min_confidence": 0.5, "limit": 4},
                          headers=PYTHON_SDK)
    data = r.json()
    assert r.status_code == 200 and data["export_type"] == "sft" and data["format"] == "json"
    assert data["total_records"] == len(data["records"]) == 4
    r = await aragora.get("/api/v1/training/export/dpo", params={"min_confidence_diff": 0.2}, headers=PYTHON_SDK)
    assert r.json()["total_records"] == 24
    r = await aragora.get("/api/v1/training/export/gauntlet", params={"limit": 2}, headers=PYTHON_SDK)
    assert [x["attack_type"] for x in r.json()["records"]] == ["jailbreak", "prompt_injection"]


async def test_python_sdk_stats_and_formats(aragora):
    """training.py TrainingAPI.get_stats / get_formats: GET /api/v1/training/stats, /formats."""
    stats = (await aragora.get("/api/v1/training/stats", headers=PYTHON_SDK)).json()
    assert stats["available_exporters"] == ["sft", "dpo", "gauntlet"] and stats["exported_files"] == []
    formats = (await aragora.get("/api/v1/training/formats", headers=PYTHON_SDK)).json()
    assert formats["output_formats"] == ["json", "jsonl"] and formats["formats"]["dpo"]["schema"]
    assert formats["endpoints"]["dpo"] == "/api/v1/training/export/dpo"  # as Aragora's server lists them


async def test_python_sdk_list_jobs_pages(aragora):
    """training.py TrainingAPI.list_jobs(status=None, limit=50, offset=0): always sends limit and offset."""
    ids = [(await aragora.post("/api/training/jobs", json={"name": f"p{i}", "base_model": TINY})).json()["id"]
           for i in range(5)]
    newest_first = ids[::-1]
    r = await aragora.get("/api/v1/training/jobs", params={"limit": 50, "offset": 0}, headers=PYTHON_SDK)
    page = r.json()
    assert r.status_code == 200 and (page["total"], page["limit"], page["offset"]) == (5, 50, 0)
    assert [j["id"] for j in page["jobs"]] == newest_first
    pages = []
    for offset in (0, 2, 4):
        page = (await aragora.get("/api/v1/training/jobs", params={"limit": 2, "offset": offset},
                                  headers=PYTHON_SDK)).json()
        assert (page["total"], page["limit"], page["offset"]) == (5, 2, offset)
        pages += [j["id"] for j in page["jobs"]]
    assert pages == newest_first  # page 2 is not page 1 again
    page = (await aragora.get("/api/v1/training/jobs", params={"limit": 50, "offset": 0, "status": "pending"},
                              headers=PYTHON_SDK)).json()
    assert page["total"] == 5 and page["jobs"][0]["training_data_examples"] == 0


async def test_python_sdk_errors_carry_the_reason(aragora):
    """client.py _handle_error_response reads ``error`` (and ``code``) from the error body."""
    r = await aragora.get("/api/v1/training/jobs", params={"limit": 50, "offset": -1}, headers=PYTHON_SDK)
    assert r.status_code == 422 and "offset" in sdk_error_message(r) and r.json()["code"] == "INVALID_ARGUMENT"
    r = await aragora.get("/api/v1/training/jobs/job-nope", headers=PYTHON_SDK)
    assert r.status_code == 404 and "job-nope" in sdk_error_message(r) and r.json()["code"] == "NOT_FOUND"
    r = await aragora.get("/api/v1/training/nothing-here", headers=PYTHON_SDK)
    assert r.status_code == 404 and sdk_error_message(r) == "Not Found"
    r = await aragora.put("/api/v1/training/stats", headers=PYTHON_SDK)
    assert r.status_code == 405 and sdk_error_message(r) == "Method Not Allowed" and r.headers["allow"] == "GET"


async def test_typescript_sdk_exports_with_every_param(aragora):
    """training.ts TrainingAPI.exportSFT (SFTExportParams: min_confidence, min_success_rate, limit, offset,
    include_critiques, include_patterns, include_debates, format), exportDPO, exportGauntlet (persona,
    min_severity, limit, format); reads TrainingExportResult {records? | data?}."""
    params = {"min_confidence": 0.5, "min_success_rate": 0.6, "limit": 3, "offset": 2, "include_critiques": "true",
              "include_patterns": "false", "include_debates": "true", "format": "json"}
    r = await aragora.get("/api/v1/training/export/sft", params=params)
    data = r.json()
    assert r.status_code == 200, r.text
    assert [x["metadata"]["debate_id"] for x in data["records"]] == ["d-02", "d-03", "d-04"]  # offset applied
    assert data["parameters"]["offset"] == 2 and data["parameters"]["include_patterns"] is False
    r = await aragora.get("/api/v1/training/export/sft", params={**params, "format": "jsonl"})
    lines = r.json()["data"].split("\n")
    assert [json.loads(x)["metadata"]["debate_id"] for x in lines] == ["d-02", "d-03", "d-04"]
    r = await aragora.get("/api/v1/training/export/dpo", params={"min_confidence_diff": 0.1, "limit": 2,
                                                                  "format": "jsonl"})
    assert r.json()["format"] == "jsonl" and len(r.json()["data"].split("\n")) == 2
    r = await aragora.get("/api/v1/training/export/gauntlet", params={"persona": "gdpr", "min_severity": 0.5,
                                                                       "limit": 10, "format": "json"})
    assert r.json()["total_records"] == 1
    # Streaming stays available on this path too, by asking for it
    r = await aragora.get("/api/v1/training/export/sft?format=jsonl", headers={"accept": "application/x-ndjson"})
    assert r.headers["content-type"].startswith("application/x-ndjson") and len(r.text.splitlines()) == 12


async def test_typescript_sdk_list_jobs_and_stats(aragora):
    """training.ts TrainingAPI.listJobs (ListJobsParams: limit, offset, status, vertical) -> {jobs}; getStats."""
    await aragora.post("/api/training/jobs", json={"name": "t1", "vertical": "legal", "base_model": TINY})
    r = await aragora.get("/api/v1/training/jobs", params={"limit": 10, "offset": 0, "status": "pending",
                                                           "vertical": "legal"})
    assert [j["name"] for j in r.json()["jobs"]] == ["t1"]
    assert (await aragora.get("/api/v1/training/stats")).status_code == 200


async def test_frontend_client_class(aragora):
    """aragora-client.ts TrainingAPI: getJob, startJob, cancelJob (POST .../cancel), getJobMetrics,
    getJobArtifacts, deleteJob (DELETE); HttpClient throws ``errorData.error || HTTP status``."""
    headers = {**BROWSER_FETCH, "content-type": "application/json"}
    job = (await aragora.post("/api/training/jobs", json={"name": "c1", "base_model": TINY}, headers=headers)).json()
    r = await aragora.get(f"/api/training/jobs/{job['id']}", headers=headers)
    assert r.status_code == 200 and r.json()["id"] == job["id"]
    r = await aragora.post(f"/api/training/jobs/{job['id']}/cancel", json={}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["success"] is True
    r = await aragora.post(f"/api/training/jobs/{job['id']}/cancel", json={}, headers=headers)
    assert r.status_code == 200 and r.json()["success"] is True  # already cancelled: nothing to do
    for path in ("metrics", "artifacts"):
        assert (await aragora.get(f"/api/training/jobs/{job['id']}/{path}", headers=headers)).status_code == 200
    r = await aragora.post(f"/api/training/jobs/{job['id']}/start", json={}, headers=headers)
    assert r.status_code == 409 and r.json()["error"]
    r = await aragora.post("/api/training/jobs/job-nope/cancel", json={}, headers=headers)
    assert r.status_code == 404 and "job-nope" in r.json()["error"]


async def test_grpc_list_jobs_offset(aragora):
    """The gRPC side of the paging the SDKs need: ListJobsRequest.offset (an optional field added; a request
    without it is unchanged) skips that many jobs; a negative one is INVALID_ARGUMENT naming it."""
    for i in range(3):
        await aragora.post("/api/training/jobs", json={"name": f"g{i}", "base_model": TINY})
    async with grpc.aio.insecure_channel(aragora.trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        every = await stub.ListJobs(pb.ListJobsRequest())
        page = await stub.ListJobs(pb.ListJobsRequest(limit=1, offset=1))
        assert [j.name for j in every.jobs] == ["g2", "g1", "g0"] and every.total == page.total == 3
        assert [j.name for j in page.jobs] == ["g1"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListJobs(pb.ListJobsRequest(offset=-1))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "offset" in err.value.details()
