"""The status codes and keys of Aragora's own server handler (an0mium/aragora
aragora/server/handlers/training.py, TrainingHandler), which its clients rely on: the job routes that exist
only there (_complete_job, _export_job_data, and the TypeScript client's POST .../cancel), _cancel_job on a job
that already ended, _get_job_metrics, handle_list_jobs; and the requests the guide's clients make, which keep
the guide's answers."""

from __future__ import annotations

import pytest

from tests.compat.conftest import BROWSER_FETCH, PYTHON_SDK, wait_status
from tests.conftest import exporter_settings, gateway_client
from tests.trainer.conftest import DATASET, TINY, running_trainer

pytestmark = pytest.mark.asyncio

FAST = {"num_epochs": 1, "max_steps": 4, "batch_size": 2, "max_seq_length": 128, "quantization": "none",
        "lora_r": 4, "lora_alpha": 8, "learning_rate": 5e-3, "gradient_checkpointing": False,
        "dataset_path": DATASET}


@pytest.fixture(scope="module")
async def trained(tmp_path_factory, tiny_models_dir):
    """The gateway over a real exporter and a real trainer with the tiny model, and one job trained to
    completion (once for the module: the tests below only read it, and name their own jobs apart)."""
    from services.exporter import server

    tmp_path = tmp_path_factory.mktemp("trained")
    exporter = await server.start(exporter_settings(tmp_path), port=0)
    async with (running_trainer(tmp_path, models_dir=tiny_models_dir, exporter_address=exporter.address) as (_, t),
                gateway_client(exporter.address, t.address) as client):
        r = await client.post("/api/training/jobs", json={"name": "done", "vertical": "legal",
                                                          "base_model": TINY, "training_config": FAST})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        assert (await client.post(f"/api/training/jobs/{job_id}/start")).status_code == 200
        client.job = await wait_status(client, job_id, {"completed", "failed"})
        assert client.job["status"] == "completed", client.job
        yield client
    await exporter.stop(0.5)


async def test_a_completed_job_as_aragora_clients_read_it(trained):
    """handle_list_jobs / _get_job (and useFineTuning.ts mapBackendJob): training_data_examples, total_epochs,
    checkpoint_path / output_path of a completed job; _get_job_metrics of it."""
    job_id = trained.job["id"]
    r = await trained.get("/api/v1/training/jobs", params={"limit": 50, "offset": 0, "status": "completed"},
                          headers=PYTHON_SDK)
    [job] = r.json()["jobs"]
    examples = trained.job["training_examples"]
    assert examples > 0 and job["training_data_examples"] == examples
    assert job["status"] == "completed" and job["total_epochs"] == 1
    artifacts = (await trained.get(f"/api/training/jobs/{job_id}/artifacts")).json()
    assert job["checkpoint_path"] == job["output_path"] == artifacts["checkpoint_path"]
    assert job["output_path"].endswith("adapter")
    single = (await trained.get(f"/api/training/jobs/{job_id}", headers=BROWSER_FETCH)).json()
    assert single["output_path"] == job["output_path"]
    m = (await trained.get(f"/api/training/jobs/{job_id}/metrics", headers=BROWSER_FETCH)).json()
    assert m["status"] == "completed" and m["training_data_examples"] > 0 and m["final_loss"] is not None
    assert "complete" not in m  # the guide's metrics, measured


async def test_complete_webhook(trained):
    """_complete_job: POST /api/v1/training/jobs/{id}/complete -> {success, job_id, status, final_loss}. Here
    the trainer completes jobs itself: a completed job is acknowledged with its own loss, others are a 409."""
    job_id = trained.job["id"]
    r = await trained.post(f"/api/v1/training/jobs/{job_id}/complete",
                           json={"final_loss": 99.0, "checkpoint_path": "/elsewhere"}, headers=PYTHON_SDK)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"success": True, "job_id": job_id, "status": "completed", "final_loss": trained.job["loss"]}
    queued = (await trained.post("/api/training/jobs", json={"name": "q1", "base_model": TINY})).json()
    r = await trained.post(f"/api/v1/training/jobs/{queued['id']}/complete", json={"final_loss": 0.1},
                           headers=PYTHON_SDK)
    assert r.status_code == 409 and "queued" in r.json()["error"] and r.json()["code"] == "FAILED_PRECONDITION"
    r = await trained.post("/api/v1/training/jobs/job-nope/complete", headers=PYTHON_SDK)
    assert r.status_code == 404


async def test_export_job_data(trained):
    """_export_job_data: POST /api/v1/training/jobs/{id}/export -> {success, job_id, examples_exported}."""
    job_id = trained.job["id"]
    r = await trained.post(f"/api/v1/training/jobs/{job_id}/export", headers=PYTHON_SDK)
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and body["job_id"] == job_id
    assert body["examples_exported"] == trained.job["training_examples"] > 0
    assert body["files"] and all(f.startswith("data/") for f in body["files"])
    queued = (await trained.post("/api/training/jobs", json={"name": "q2", "base_model": TINY})).json()
    body = (await trained.post(f"/api/v1/training/jobs/{queued['id']}/export", headers=PYTHON_SDK)).json()
    assert body["examples_exported"] == 0 and "when the job starts" in body["detail"]


async def test_cancel_of_a_completed_job(trained):
    """_cancel_job answers 200; here an Aragora client gets 200 with the job as it is and success false, and a
    client of the guide keeps its 409."""
    job_id = trained.job["id"]
    for r in (await trained.delete(f"/api/training/jobs/{job_id}", headers=BROWSER_FETCH),
              await trained.delete(f"/api/v1/training/jobs/{job_id}", headers=PYTHON_SDK),
              await trained.post(f"/api/training/jobs/{job_id}/cancel", headers=BROWSER_FETCH)):
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed" and r.json()["success"] is False
    r = await trained.delete(f"/api/training/jobs/{job_id}")  # curl / httpx: the guide's answer
    assert r.status_code == 409 and r.json()["code"] == "FAILED_PRECONDITION"


async def test_the_guide_clients_keep_the_guide_shapes(aragora):
    """The same routes asked by a client of the guide (curl / httpx: no Fetch Metadata; the dashboard served
    here: Accept: application/json) answer the guide's shapes, unchanged."""
    for headers in ({}, {"accept": "application/json", "sec-fetch-mode": "cors"}):
        r = await aragora.get("/api/training/export/sft?limit=2", headers=headers)
        assert isinstance(r.json(), list) and len(r.json()) == 2
        r = await aragora.get("/api/training/export/sft?format=jsonl&limit=2", headers=headers)
        assert r.headers["content-type"].startswith("application/x-ndjson") and len(r.text.splitlines()) == 2
        r = await aragora.get("/api/training/export/dpo?min_confidence=0.5", headers=headers)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "min_confidence"
        job = (await aragora.post("/api/training/jobs", json={"name": f"g{len(headers)}", "base_model": TINY},
                                  headers=headers)).json()
        listing = (await aragora.get("/api/training/jobs", headers=headers)).json()
        assert set(listing) == {"jobs", "total"} and "training_data_examples" not in listing["jobs"][0]
        assert listing["jobs"][0]["status"] == "queued"
        r = await aragora.get(f"/api/training/jobs/{job['id']}/metrics", headers=headers)
        assert r.status_code == 409
        stats = (await aragora.get("/api/training/stats", headers=headers)).json()
        assert "modified_at" not in str(stats)
    # offset applies to the guide's shapes too
    r = await aragora.get("/api/training/export/sft?offset=10")
    assert [x["metadata"]["debate_id"] for x in r.json()] == ["d-10", "d-11"]
