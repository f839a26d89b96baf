"""Validation during training and early stopping end to end: a real trainer runs a real worker on the tiny
Llama; the validation losses arrive over WatchJob and SSE as eval events, early stopping ends the job
COMPLETED with the reason in its log, and the adapter kept is the best checkpoint's."""

from __future__ import annotations

import asyncio
import json

import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.trainer.conftest import FAST, create_request, parse_sse, running_trainer, watch_all

pytestmark = pytest.mark.slow


async def test_validation_events_early_stopping_and_the_best_adapter(tmp_path, tiny_models_dir):
    import torch
    from safetensors.torch import load_file

    # 12 records of 6 debates: 2 debates (4 records) validate, 8 records train in 4 steps an epoch.
    # min_delta so large that only the first validation is ever the best: patience 2 stops at step 3 of 12.
    config = dict(FAST, num_epochs=3, max_steps=12, checkpoint_every_steps=100, validation_split=0.2,
                  eval_every_steps=1, early_stopping_patience=2, early_stopping_min_delta=100.0,
                  save_total_limit=1, lr_scheduler_type=pb.LR_SCHEDULER_COSINE, warmup_steps=1)
    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        async with gateway_client("127.0.0.1:1", running.address) as api:
            job = (await stub.CreateJob(create_request("val", **config))).job
            assert job.training_config.validation_split == pytest.approx(0.2)
            watch = asyncio.create_task(watch_all(stub, job.id))
            await stub.StartJob(pb.StartJobRequest(job_id=job.id))
            _, events = await asyncio.wait_for(watch, 300)
            final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
            sse = await api.get(f"/api/training/jobs/{job.id}/events", timeout=60)
    assert final.status == pb.JOB_STATUS_COMPLETED, final.error
    assert final.current_step == 3
    validations = [e.eval for e in events if e.WhichOneof("payload") == "eval" and e.eval.phase == "validation"]
    assert [int(v.metrics["step"]) for v in validations] == [1, 2, 3]
    assert all(v.metrics["validation_loss"] > 0 and v.metrics["best_step"] == 1 for v in validations)
    messages = [e.message for e in events]
    assert any(m.startswith("early stopping at step 3") for m in messages), messages
    assert any(m.startswith("adapter: checkpoint-1, because step 1 has the lowest validation loss") for m in messages)
    steps = [e.step for e in events if e.WhichOneof("payload") == "step"]
    assert [s.learning_rate for s in steps][0] == 0.0 and steps[1].learning_rate > steps[2].learning_rate > 0

    # The same eval events reach a browser over SSE, with their metrics.
    frames = [f for f in parse_sse(sse.text) if f["event"] == "eval" and f["data"].get("phase") == "validation"]
    assert [f["data"]["metrics"]["step"] for f in frames] == [1, 2, 3]

    folder = running.manager.jobs_dir / job.id
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["validation"]["adapter_checkpoint"] == "checkpoint-1" and metrics["validation"]["early_stopped"]
    assert metrics["training_config"]["lr_scheduler_type"] == "cosine"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-3"]
    adapter = load_file(folder / "adapter" / "adapter_model.safetensors")
    best = load_file(folder / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    assert all(torch.equal(adapter[k], best[k]) for k in adapter)
