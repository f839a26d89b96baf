"""The job, model and event routes through the gateway's ASGI app, talking real gRPC to a real trainer."""

from __future__ import annotations

import json

import pytest

from tests.conftest import gateway_client
from tests.trainer.conftest import DATASET, TINY, parse_sse, running_trainer


@pytest.fixture
async def api(tmp_path, exporter):
    async with running_trainer(tmp_path) as (_stub, trainer):
        async with gateway_client(exporter.address, trainer.address) as client:
            client.trainer = trainer
            yield client


GUIDE_BODY = {
    "name": "legal_specialist_v1",
    "vertical": "legal",
    "base_model": TINY,
    "training_config": {
        "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "num_epochs": 3, "batch_size": 4,
        "learning_rate": 0.0002, "max_seq_length": 256, "quantization": "4bit", "gradient_checkpointing": True,
    },
}

JOB_KEYS = {"id", "name", "vertical", "base_model", "status", "progress", "current_epoch", "current_step",
            "total_steps", "loss", "training_examples", "created_at", "started_at", "completed_at", "error",
            "training_config"}
CONFIG_KEYS = {"lora_r", "lora_alpha", "lora_dropout", "num_epochs", "batch_size", "learning_rate", "max_seq_length",
               "quantization", "gradient_checkpointing", "dataset_path", "method", "beta", "min_confidence",
               "min_confidence_diff", "target_modules", "max_steps", "seed", "checkpoint_every_steps"}
CONFIG_KEYS |= {"gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay",
                "max_grad_norm", "validation_split", "eval_every_steps", "early_stopping_patience",
                "early_stopping_min_delta", "save_total_limit", "init_from_job", "init_from_checkpoint", "num_workers"}


async def test_create_get_list_cancel_as_the_guide_shows(api):
    r = await api.post("/api/training/jobs", json=GUIDE_BODY)
    assert r.status_code == 201, r.text
    job = r.json()
    assert set(job) == JOB_KEYS and set(job["training_config"]) == CONFIG_KEYS
    assert job["id"].startswith("job-") and job["status"] == "queued" and job["progress"] == 0
    assert job["loss"] is None and job["started_at"] is None and job["error"] is None
    assert job["created_at"].endswith("Z") or "+00:00" in job["created_at"]
    assert job["training_config"]["quantization"] == "4bit" and job["training_config"]["max_seq_length"] == 256

    assert (await api.get(f"/api/training/jobs/{job['id']}")).json() == job
    listing = (await api.get("/api/training/jobs", params={"vertical": "legal", "status": "queued"})).json()
    assert listing["total"] == 1 and listing["jobs"][0]["id"] == job["id"]
    assert (await api.get("/api/training/jobs", params={"vertical": "medical"})).json() == {"jobs": [], "total": 0}
    assert (await api.get("/api/training/jobs?vertical=&status=")).json()["total"] == 1  # empty filters: any

    counts = (await api.get("/api/training/jobs/counts")).json()
    assert counts == {"queued": 1, "preparing": 0, "training": 0, "completed": 0, "failed": 0, "cancelled": 0,
                      "total": 1, "running": 0}

    r = await api.delete(f"/api/training/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["completed_at"]
    r = await api.delete(f"/api/training/jobs/{job['id']}")
    assert r.status_code == 409 and r.json()["code"] == "FAILED_PRECONDITION" and "cancelled" in r.json()["detail"]
    r = await api.post(f"/api/training/jobs/{job['id']}/start")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    r = await api.get(f"/api/training/jobs/{job['id']}/metrics")
    assert r.status_code == 409


async def test_camel_case_and_flat_form_names(api):
    body = {"jobName": "camel", "vertical": "legal", "baseModel": TINY,
            "trainingConfig": {"loraR": 4, "loraAlpha": 8, "loraDropout": 0.1, "numEpochs": 2, "batchSize": 2,
                               "learningRate": 0.001, "maxSeqLength": 128, "quantization": "none",
                               "gradientCheckpointing": False, "datasetPath": DATASET}}
    r = await api.post("/api/training/jobs", json=body)
    assert r.status_code == 201, r.text
    c = r.json()["training_config"]
    assert (c["lora_r"], c["lora_alpha"], c["lora_dropout"], c["num_epochs"], c["batch_size"]) == (4, 8, 0.1, 2, 2)
    assert (c["learning_rate"], c["max_seq_length"], c["quantization"], c["gradient_checkpointing"]) == (
        0.001, 128, "none", False)
    assert c["dataset_path"] == DATASET and r.json()["name"] == "camel"

    # The guide's form: parameters beside jobName.
    r = await api.post("/api/training/jobs", json={"jobName": "flat", "baseModel": TINY, "loraR": 16, "numEpochs": 1})
    assert r.status_code == 201, r.text
    assert r.json()["training_config"]["lora_r"] == 16 and r.json()["training_config"]["num_epochs"] == 1


@pytest.mark.parametrize("patch,field", [
    ({"lora_r": "8"}, "training_config.lora_r"),
    ({"lora_r": 8.5}, "training_config.lora_r"),
    ({"loraR": True}, "training_config.loraR"),
    ({"learning_rate": "fast"}, "training_config.learning_rate"),
    ({"quantization": "2bit"}, "training_config.quantization"),
    ({"gradient_checkpointing": "yes"}, "training_config.gradient_checkpointing"),
    ({"lora_rank": 8}, "training_config.lora_rank"),
    ({"lora_r": 2**40}, "training_config.lora_r"),
])
async def test_wrong_types_are_422_naming_the_field(api, patch, field):
    body = {**GUIDE_BODY, "training_config": {**GUIDE_BODY["training_config"], **patch}}
    r = await api.post("/api/training/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_ARGUMENT"
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert (await api.get("/api/training/jobs")).json()["total"] == 0


@pytest.mark.parametrize("patch,field", [
    ({"lora_r": 0}, "training_config.lora_r"),
    ({"lora_dropout": 1}, "training_config.lora_dropout"),
    ({"learning_rate": 0}, "training_config.learning_rate"),
    ({"max_seq_length": 100_000}, "training_config.max_seq_length"),
    ({"dataset_path": "../../etc/passwd"}, "training_config.dataset_path"),
])
async def test_out_of_range_values_are_422_from_the_trainer(api, patch, field):
    body = {**GUIDE_BODY, "training_config": {**GUIDE_BODY["training_config"], **patch}}
    r = await api.post("/api/training/jobs", json=body)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await api.get("/api/training/jobs")).json()["total"] == 0


async def test_other_refusals(api):
    r = await api.post("/api/training/jobs", json={**GUIDE_BODY, "base_model": "acme/nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "base_model"
    r = await api.post("/api/training/jobs", json={"vertical": "legal"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    assert (await api.post("/api/training/jobs", json=GUIDE_BODY)).status_code == 201
    r = await api.post("/api/training/jobs", json=GUIDE_BODY)
    assert r.status_code == 409 and r.json()["code"] == "ALREADY_EXISTS"
    for method, path in (("get", "/api/training/jobs/job-nope"), ("post", "/api/training/jobs/job-nope/start"),
                         ("delete", "/api/training/jobs/job-nope"), ("get", "/api/training/jobs/job-nope/metrics"),
                         ("get", "/api/training/jobs/job-nope/artifacts"),
                         ("get", "/api/training/jobs/job-nope/artifacts/events.jsonl"),
                         ("get", "/api/training/jobs/job-nope/events")):
        r = await getattr(api, method)(path)
        assert r.status_code == 404, (path, r.text)
    r = await api.get("/api/training/jobs", params={"status": "running"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


async def test_artifact_download_and_traversal(api):
    job = (await api.post("/api/training/jobs", json=GUIDE_BODY)).json()
    folder = api.trainer.manager.jobs_dir / job["id"]
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4000)
    listing = (await api.get(f"/api/training/jobs/{job['id']}/artifacts")).json()
    assert set(listing) == {"job_id", "checkpoint_path", "data_directory", "files"}
    assert {"name": "adapter/adapter_model.safetensors", "size_bytes": 1_024_000, "type": "weights"} in listing["files"]
    r = await api.get(f"/api/training/jobs/{job['id']}/artifacts/adapter/adapter_model.safetensors")
    assert r.status_code == 200 and r.content == bytes(range(256)) * 4000
    assert r.headers["content-length"] == "1024000"
    assert 'filename="adapter_model.safetensors"' in r.headers["content-disposition"]
    r = await api.get(f"/api/training/jobs/{job['id']}/artifacts/events.jsonl")
    assert json.loads(r.text.splitlines()[0])["type"] == "status"
    for name in ("..%2F..%2Fjobs.db", "adapter/..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        r = await api.get(f"/api/training/jobs/{job['id']}/artifacts/{name}")
        assert r.status_code in (404, 422), (name, r.status_code)
        assert "root:" not in r.text


async def test_models_route(api):
    r = await api.get("/api/training/models")
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["models"]}
    assert set(models[TINY]) == {"id", "name", "provider", "parameters", "size", "verticals", "capabilities",
                                 "recommended", "available", "unavailable_reason", "max_seq_length", "description",
                                 "downloaded"}
    assert models[TINY]["available"] is True
    assert models["HuggingFaceTB/SmolLM2-135M-Instruct"]["recommended"] is True


async def test_sse_of_a_finished_job_with_resume(api):
    job = (await api.post("/api/training/jobs", json=GUIDE_BODY)).json()
    await api.delete(f"/api/training/jobs/{job['id']}")
    r = await api.get(f"/api/training/jobs/{job['id']}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(r.text)
    assert [f["event"] for f in frames] == ["snapshot", "status", "status", "end"]
    assert frames[0]["id"] is None and frames[0]["data"]["status"] == "cancelled"
    assert [f["id"] for f in frames[1:3]] == [1, 2]
    assert frames[2]["data"]["from_status"] == "queued" and frames[2]["data"]["to_status"] == "cancelled"
    assert set(frames[2]["data"]) >= {"sequence", "time", "type", "message", "from_status", "to_status", "reason"}
    assert frames[3]["data"] == {"job_id": job["id"], "status": "cancelled"}

    r = await api.get(f"/api/training/jobs/{job['id']}/events", headers={"Last-Event-ID": "1"})
    assert [(f["event"], f["id"]) for f in parse_sse(r.text)] == [("snapshot", None), ("status", 2), ("end", None)]
    r = await api.get(f"/api/training/jobs/{job['id']}/events", params={"after": 2})
    assert [f["event"] for f in parse_sse(r.text)] == ["snapshot", "end"]
    r = await api.get(f"/api/training/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Last-Event-ID"
