"""A data-parallel job (``num_workers`` 2) through the real trainer service and the gateway: created over REST
with the camelCase name, run by the trainer's supervisor (rank 0 its worker, rank 1 spawned by it), COMPLETED,
its events each once, its adapter loadable with peft; a worker count the batch cannot share is a 422 naming
the field."""

from __future__ import annotations

import asyncio

import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.trainer.conftest import DATASET, TINY, running_trainer, watch_all

pytestmark = pytest.mark.slow

CONFIG = {"numEpochs": 1, "maxSteps": 4, "batchSize": 2, "maxSeqLength": 128, "quantization": "none", "loraR": 4,
          "loraAlpha": 8, "learningRate": 5e-3, "gradientCheckpointing": False, "datasetPath": DATASET,
          "checkpointEverySteps": 2, "numWorkers": 2}


async def test_a_two_worker_job_completes_through_the_service(tmp_path, tiny_models_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        async with gateway_client("127.0.0.1:1", running.address) as api:
            bad = await api.post("/api/training/jobs", json={"name": "ddp-bad", "vertical": "legal",
                                                             "base_model": TINY,
                                                             "training_config": {**CONFIG, "numWorkers": 3}})
            assert bad.status_code == 422, bad.text
            assert "training_config.num_workers" in bad.text and "batch_size 2" in bad.text
            r = await api.post("/api/training/jobs", json={"name": "ddp", "vertical": "legal", "base_model": TINY,
                                                           "training_config": CONFIG})
            assert r.status_code == 201, r.text
            job = r.json()
            assert job["training_config"]["num_workers"] == 2
            watch = asyncio.create_task(watch_all(stub, job["id"]))
            assert (await api.post(f"/api/training/jobs/{job['id']}/start")).status_code == 200
            _, events = await asyncio.wait_for(watch, 400)
            final = (await stub.GetJob(pb.GetJobRequest(job_id=job["id"]))).job
    assert final.status == pb.JOB_STATUS_COMPLETED, final.error
    assert final.training_config.num_workers == 2
    steps = [e.step.step for e in events if e.WhichOneof("payload") == "step"]
    assert steps == [1, 2, 3, 4]
    assert any("data-parallel: 2 data-parallel workers" in e.message for e in events)
    folder = running.manager.jobs_dir / job["id"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_models_dir / TINY.replace("/", "--")),
                                      folder / "adapter")
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()
