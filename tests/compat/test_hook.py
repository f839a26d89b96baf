"""The frontend hook the user guide documents: aragora/live/src/hooks/useFineTuning.ts (an0mium/aragora).

Each test replays the requests of one of the hook's functions, with the headers a browser's ``fetch(url)``
sends, and asserts what the function reads; where the function would put the dashboard into its error state
(``!response.ok``), the test asserts the status it needs."""

from __future__ import annotations

import pytest

from tests.compat.conftest import BROWSER_FETCH, CODELLAMA

pytestmark = pytest.mark.asyncio

# useFineTuning.ts CreateJobData, as the hook's docstring example fills it (base_model from the ModelSelector).
CREATE = {
    "name": "legal_specialist_v1", "vertical": "legal", "base_model": "codellama-7b",
    "training_config": {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "num_epochs": 3, "batch_size": 4,
                        "learning_rate": 0.0002, "max_seq_length": 256, "quantization": "4bit",
                        "gradient_checkpointing": True},
}


def map_backend_job(data: dict) -> dict:
    """useFineTuning.ts mapBackendJob, line for line (the keys it reads and its fallbacks)."""
    status_map = {"pending": "queued", "ready": "queued", "training": "training", "completed": "completed",
                  "failed": "failed", "cancelled": "cancelled"}
    return {
        "id": data.get("id") or "",
        "name": data.get("adapter_name") or data.get("name") or "",
        "baseModel": data.get("base_model") or "",
        "status": status_map.get(data.get("status") or "queued", "queued"),
        "totalEpochs": data.get("total_epochs") or None,
        "trainingExamples": data.get("training_data_examples") or 0,
        "startedAt": data.get("started_at") or data.get("created_at") or None,
        "outputPath": data.get("checkpoint_path") or data.get("output_path") or None,
        "error": data.get("error") or None,
    }


async def create(api, **changes) -> dict:
    """useFineTuning.ts createJob: POST /api/training/jobs; reads ``result.job || result``."""
    r = await api.post("/api/training/jobs", json={**CREATE, **changes}, headers={**BROWSER_FETCH,
                                                                                  "content-type": "application/json"})
    assert r.status_code in (200, 201), r.text
    result = r.json()
    return map_backend_job(result.get("job") or result)


async def test_create_job_with_the_model_selector_short_id(aragora):
    """useFineTuning.ts createJob with ModelSelector.tsx's id 'codellama-7b'."""
    job = await create(aragora)
    assert job["id"].startswith("job-") and job["baseModel"] == CODELLAMA and job["status"] == "queued"


async def test_create_job_error_shows_the_reason(aragora):
    """useFineTuning.ts createJob: ``throw new Error(err.error || `HTTP ${status}`)``."""
    for body, words in (({**CREATE, "base_model": "finbert"}, "ProsusAI/finbert"),
                        ({**CREATE, "base_model": "legal-bert"}, "nlpaueb/legal-bert-base-uncased"),
                        ({**CREATE, "training_config": {**CREATE["training_config"], "lora_r": -1}}, "lora_r")):
        r = await aragora.post("/api/training/jobs", json=body, headers=BROWSER_FETCH)
        assert r.status_code == 422
        err = r.json()
        assert isinstance(err["error"], str) and words in err["error"], err
        assert err["error"] == err["detail"] and err["code"] == "INVALID_ARGUMENT"  # the one body, kept
    await create(aragora)
    r = await aragora.post("/api/training/jobs", json=CREATE, headers=BROWSER_FETCH)
    assert r.status_code == 409 and "legal_specialist_v1" in r.json()["error"]


async def test_load_jobs_and_map_backend_job(aragora):
    """useFineTuning.ts loadJobs (GET /api/training/jobs?vertical=&status=) and mapBackendJob."""
    created = await create(aragora)
    for status in ("pending", "queued"):  # Aragora's word and ours
        r = await aragora.get("/api/training/jobs", params={"vertical": "legal", "status": status},
                              headers=BROWSER_FETCH)
        assert r.status_code == 200, r.text
        jobs = [map_backend_job(j) for j in r.json()["jobs"]]
        assert [j["id"] for j in jobs] == [created["id"]]
        assert jobs[0]["status"] == "queued" and jobs[0]["startedAt"]  # created_at when not started
    raw = r.json()["jobs"][0]
    assert raw["status"] == "pending" and raw["job_status"] == "queued"  # Aragora's word, and ours
    assert raw["training_data_examples"] == raw["training_examples"] == 0
    assert raw["total_epochs"] == 3 and raw["output_path"] is None and raw["checkpoint_path"] is None


async def test_load_job(aragora):
    """useFineTuning.ts loadJob: GET /api/training/jobs/{id}; 404 returns null without an error."""
    created = await create(aragora)
    r = await aragora.get(f"/api/training/jobs/{created['id']}", headers=BROWSER_FETCH)
    assert r.status_code == 200 and map_backend_job(r.json())["id"] == created["id"]
    r = await aragora.get("/api/training/jobs/job-nope", headers=BROWSER_FETCH)
    assert r.status_code == 404


async def test_start_job(aragora):
    """useFineTuning.ts startJob: POST /api/training/jobs/{id}/start must be ok; a refusal shows err.error."""
    created = await create(aragora)
    r = await aragora.post(f"/api/training/jobs/{created['id']}/start", headers=BROWSER_FETCH)
    assert r.status_code == 200, r.text
    await aragora.delete(f"/api/training/jobs/{created['id']}", headers=BROWSER_FETCH)
    r = await aragora.post(f"/api/training/jobs/{created['id']}/start", headers=BROWSER_FETCH)
    assert r.status_code == 409 and "cancelled" in r.json()["error"]


async def test_cancel_job_twice_keeps_the_dashboard_out_of_its_error_state(aragora):
    """useFineTuning.ts cancelJob: DELETE /api/training/jobs/{id}; any !ok sets the hook's error."""
    created = await create(aragora)
    for _ in range(2):  # the second cancel finds the job already cancelled
        r = await aragora.delete(f"/api/training/jobs/{created['id']}", headers=BROWSER_FETCH)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["success"] is True
        assert r.json()["job_id"] == created["id"]
    r = await aragora.delete("/api/training/jobs/job-nope", headers=BROWSER_FETCH)
    assert r.status_code == 404 and "job-nope" in r.json()["error"]


async def test_metrics_of_a_job_not_completed_are_what_is_known(aragora):
    """useFineTuning.ts getJobMetrics: GET .../metrics; 404 is null, any other !ok sets the hook's error."""
    created = await create(aragora)
    r = await aragora.get(f"/api/training/jobs/{created['id']}/metrics", headers=BROWSER_FETCH)
    assert r.status_code == 200, r.text
    m = r.json()  # JobMetrics
    assert m["job_id"] == created["id"] and m["status"] == "pending" and m["complete"] is False
    assert m["training_data_examples"] == 0 and m["training_data_debates"] == 0
    assert m["final_loss"] is None and m["elo_rating"] is None and m["win_rate"] is None
    assert m["vertical_accuracy"] == {}
    r = await aragora.get("/api/training/jobs/job-nope/metrics", headers=BROWSER_FETCH)
    assert r.status_code == 404


async def test_get_job_artifacts(aragora):
    """useFineTuning.ts getJobArtifacts: GET .../artifacts -> {job_id, checkpoint_path?, data_directory?, files}."""
    created = await create(aragora)
    r = await aragora.get(f"/api/training/jobs/{created['id']}/artifacts", headers=BROWSER_FETCH)
    assert r.status_code == 200
    a = r.json()
    assert a["job_id"] == created["id"] and isinstance(a["files"], list)
    assert {"name", "size_bytes", "type"} <= set(a["files"][0])


async def test_export_sft_reads_records(aragora):
    """useFineTuning.ts exportSFT: GET /api/training/export/sft?min_confidence=&limit=; returns data.records."""
    r = await aragora.get("/api/training/export/sft", params={"min_confidence": 0.6, "limit": 5},
                          headers=BROWSER_FETCH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    data = r.json()
    records = data.get("records") or []
    assert [x["metadata"]["debate_id"] for x in records] == [f"d-{i:02d}" for i in range(5)]
    assert set(records[0]) == {"instruction", "input", "output", "metadata"}
    assert data["export_type"] == "sft" and data["total_records"] == 5 and data["format"] == "json"
    assert data["parameters"] == {"min_confidence": 0.6, "limit": 5} and data["exported_at"]
    r = await aragora.get("/api/training/export/sft?min_confidence=0.7", headers=BROWSER_FETCH)
    assert r.json()["records"] == [] and r.json()["total_records"] == 0  # every seeded debate is at 2/3


async def test_export_dpo_reads_records(aragora):
    """useFineTuning.ts exportDPO: GET /api/training/export/dpo?min_confidence_diff=&limit=; data.records."""
    r = await aragora.get("/api/training/export/dpo?min_confidence_diff=0.3&limit=3", headers=BROWSER_FETCH)
    data = r.json()
    assert r.status_code == 200 and data["total_records"] == len(data["records"]) == 3
    assert set(data["records"][0]) == {"prompt", "chosen", "rejected", "metadata"}
    r = await aragora.get("/api/training/export/dpo", headers=BROWSER_FETCH)  # no option: every pair
    assert r.json()["total_records"] == 24


async def test_get_stats(aragora):
    """useFineTuning.ts getStats: TrainingStats (exported_files[] with created_at and modified_at)."""
    assert (await aragora.post("/api/training/export/sft")).status_code == 200  # one file in the export dir
    r = await aragora.get("/api/training/stats", headers=BROWSER_FETCH)
    stats = r.json()
    assert r.status_code == 200 and stats["available_exporters"] == ["sft", "dpo", "gauntlet"]
    assert stats["export_directory"] and stats["sft_available"] is True
    [f] = stats["exported_files"]
    assert f["name"].endswith(".jsonl") and f["size_bytes"] > 0
    assert f["created_at"] and f["modified_at"] == f["created_at"]


async def test_get_formats(aragora):
    """useFineTuning.ts getFormats: TrainingFormats {formats: {X: {description, schema, use_case}},
    output_formats, endpoints}."""
    r = await aragora.get("/api/training/formats", headers=BROWSER_FETCH)
    data = r.json()
    assert r.status_code == 200
    for name in ("sft", "dpo", "gauntlet"):
        f = data["formats"][name]
        assert f["description"] and f["use_case"] and f["schema"]["type"] == "object"
        assert f["schema"] == f["json_schema"]
        assert data["endpoints"][name] == f"/api/training/export/{name}"
    assert data["output_formats"] == ["json", "jsonl"]
