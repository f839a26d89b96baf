"""The model routes through the gateway's ASGI app, real gRPC to a real trainer that reaches the loopback hub:
pull, list with size on disk, delete; a job on a hub id over REST with its download events on SSE; errors 4xx."""

from __future__ import annotations

import asyncio

from tests.conftest import gateway_client
from tests.hub.conftest import GATED, MODEL, TOKEN
from tests.trainer.conftest import DATASET, parse_sse, running_trainer


async def test_pull_list_delete_and_a_job_on_a_hub_id_over_rest(fake_hub, tmp_path):
    settings = dict(hub_enabled=True, hub_endpoint=fake_hub.endpoint, hub_token=TOKEN)
    async with running_trainer(tmp_path, models_dir=tmp_path / "models", **settings) as (_stub, trainer):
        async with gateway_client("127.0.0.1:1", trainer.address) as api:
            r = await api.post("/api/training/models/pull", json={"model_id": "org/none"})
            assert r.status_code == 422 and "unknown model id" in r.text
            r = await api.post("/api/training/models/pull", json={"model_id": GATED})
            assert r.status_code == 202 and r.json()["bytes_total"] > 0, r.text
            for _ in range(200):
                local = {m["id"]: m for m in (await api.get("/api/training/models/local")).json()["models"]}
                if local.get(GATED, {}).get("source") == "hub":
                    break
                await asyncio.sleep(0.1)
            assert local[GATED]["size_bytes"] > 0 and local[GATED]["used_by"] == []
            assert TOKEN not in (await api.get("/api/training/models/local")).text
            r = await api.delete(f"/api/training/models/local/{GATED}")
            assert r.status_code == 200 and r.json()["freed_bytes"] > 0
            r = await api.delete(f"/api/training/models/local/{GATED}")
            assert r.status_code == 404

            body = {"name": "hub over rest", "vertical": "legal", "base_model": MODEL,
                    "training_config": {"num_epochs": 1, "max_steps": 2, "batch_size": 2, "max_seq_length": 64,
                                        "quantization": "none", "lora_r": 4, "gradient_checkpointing": False,
                                        "dataset_path": DATASET}}
            r = await api.post("/api/training/jobs", json=body)
            assert r.status_code in (200, 201), r.text
            job_id = r.json()["id"] if "id" in r.json() else r.json()["job"]["id"]
            r = await api.post(f"/api/training/jobs/{job_id}/start")
            assert r.status_code in (200, 202), r.text
            r = await api.get(f"/api/training/jobs/{job_id}/events", timeout=120)
            frames = parse_sse(r.text)
            downloads = [f["data"] for f in frames if f["event"] == "download"]
            assert downloads and downloads[-1]["phase"] == "done"
            assert downloads[-1]["bytes_done"] == downloads[-1]["bytes_total"] > 0
            assert {"files_done", "files_total", "bytes_per_second", "eta_seconds"} <= set(downloads[-1])
            statuses = [f["data"].get("to_status") for f in frames if f["event"] == "status"]
            assert statuses[-1] == "completed", frames[-3:]
            bad = dict(body, base_model="org/none")
            r = await api.post("/api/training/jobs", json=bad)
            assert r.status_code == 422 and "base_model" in r.text and "unknown model id" in r.text
