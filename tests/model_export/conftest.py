"""Fixtures of the merge/export tests: one tiny job trained for real (the tiny random Llama, LoRA on q/k/v/o so
the merge touches every rotary-permuted projection) on a real trainer, shared by the module's tests, and helpers
to run an export to its end over gRPC.

The tiny test tokenizer (tests/support/tiny_model.py) is a byte-level BPE with ChatML special tokens, which GGUF
represents as ``tokenizer.ggml.model = gpt2`` with no loss, so the real fixture is used as it is."""

from __future__ import annotations

import grpc
import pytest

from aragora.training.v1 import model_export_pb2 as xpb
from aragora.training.v1 import model_export_pb2_grpc
from aragora.training.v1 import trainer_pb2 as pb
from tests.support.wait import until as wait_for
from tests.trainer.conftest import FAST, TINY, create_request, running_trainer, sft_records

KINDS = {"merged": xpb.EXPORT_KIND_MERGED, "gguf_f16": xpb.EXPORT_KIND_GGUF_F16,
         "gguf_q8_0": xpb.EXPORT_KIND_GGUF_Q8_0}
TRAIN = {**FAST, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "max_steps": 4}


def heldout_prompts(tokenizer, n: int = 8) -> list[str]:
    """Chat prompts the job never trained on (records past the 12 of its dataset), rendered with the model's
    template, plus two plain texts."""
    prompts = [tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{r['instruction']}\n{r['input']}"}], tokenize=False, add_generation_prompt=True)
        for r in sft_records(12 + n)[12:]]
    return prompts + ["The court ruled that the clause was void because", "risk 42 return, the portfolio"]


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A models folder holding the tiny random Llama (built once per session)."""
    from tests.support.tiny_model import build_tiny_model

    models_dir = tmp_path_factory.mktemp("tiny-models-export")
    build_tiny_model(models_dir, TINY)
    return models_dir


@pytest.fixture(scope="session")
async def trained_job(tmp_path_factory, tiny_models_dir):
    """A completed tiny job on a running trainer: dict(stub, exports, running, job, folder, tmp)."""
    tmp = tmp_path_factory.mktemp("export")
    async with running_trainer(tmp, models_dir=tiny_models_dir) as (stub, running):
        channel = grpc.aio.insecure_channel(running.address)
        exports = model_export_pb2_grpc.ModelExportServiceStub(channel)
        job = (await stub.CreateJob(create_request("export-e2e", **TRAIN))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))

        async def completed():
            j = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
            assert j.status not in (pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED), j.error
            return j.status == pb.JOB_STATUS_COMPLETED

        await wait_for(completed, timeout=300, interval=0.2, what="the tiny job to complete")
        try:
            yield dict(stub=stub, exports=exports, running=running, job=job, tmp=tmp,
                       folder=running.manager.jobs_dir / job.id, models_dir=tiny_models_dir)
        finally:
            await channel.close()


async def run_export(exports, job_id: str, kind: str) -> tuple[xpb.Export, list[xpb.ExportEvent]]:
    """Starts an export and watches it to its end: (the final export, every event)."""
    started = (await exports.StartExport(xpb.StartExportRequest(job_id=job_id, kind=KINDS[kind]))).export
    assert started.status == xpb.EXPORT_STATUS_RUNNING
    events = []
    async for item in exports.WatchExport(xpb.WatchExportRequest(job_id=job_id, kind=KINDS[kind])):
        if item.WhichOneof("item") == "event":
            events.append(item.event)
    final = next(e for e in (await exports.ListExports(xpb.ListExportsRequest(job_id=job_id))).exports
                 if e.kind == KINDS[kind])
    return final, events
