"""Fixtures of the inference tests: one real trainer (tiny random Llama) with one job trained to completion,
its stubs, and the gateway's app in front of it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from aragora.training.v1 import inference_pb2 as ipb
from aragora.training.v1 import inference_pb2_grpc
from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.trainer.conftest import (  # noqa: F401
    FAST,
    TINY,
    create_request,
    running_trainer,
    tiny_models_dir,
    watch_all,
)


@pytest.fixture(scope="module")
async def served(tmp_path_factory, tiny_models_dir):  # noqa: F811 - the trainer tests' fixture
    """A trainer with one completed job (checkpoints at steps 3 and 6) and one queued job, its trainer and
    inference stubs, and a gateway client talking to it."""
    tmp = tmp_path_factory.mktemp("served")
    async with running_trainer(tmp, models_dir=tiny_models_dir) as (stub, running):
        job = (await stub.CreateJob(create_request("infer-e2e", **FAST))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        await asyncio.wait_for(watch_all(stub, job.id), 300)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        assert final.status == pb.JOB_STATUS_COMPLETED, final.error
        queued = (await stub.CreateJob(create_request("infer-queued", **FAST))).job
        channel = grpc.aio.insecure_channel(running.address)
        try:
            async with gateway_client("127.0.0.1:1", running.address) as api:
                yield {"stub": stub, "infer": inference_pb2_grpc.InferenceServiceStub(channel), "running": running,
                       "job": final, "queued": queued, "api": api, "tmp": tmp}
        finally:
            await channel.close()


def chat(text: str = "Should the court rule on the contract?") -> list[ipb.ChatMessage]:
    return [ipb.ChatMessage(role="user", content=text)]


async def generate(infer, model: str, **kw) -> tuple[ipb.GenerationStarted, str, ipb.GenerationFinished]:
    """One whole Generate stream: (started, the deltas joined, finished)."""
    sampling = kw.pop("sampling", ipb.SamplingParams(max_new_tokens=12, temperature=0.0))
    started, finished, text = None, None, []
    async for item in infer.Generate(ipb.GenerateRequest(model=model, messages=kw.pop("messages", chat()),
                                                         sampling=sampling, **kw)):
        kind = item.WhichOneof("item")
        if kind == "started":
            assert started is None and not text
            started = item.started
        elif kind == "delta":
            assert started is not None and finished is None
            text.append(item.delta.text)
        else:
            finished = item.finished
    assert started is not None and finished is not None
    return started, "".join(text), finished


__all__ = ["TINY", "chat", "generate"]


def make_adapter(base_dir, out, seed: int, modules: list[str], **lora):
    """A LoRA adapter of ``base_dir`` saved to ``out``: seeded, ``lora_B`` (and a DoRA magnitude) drawn so that
    it changes the answers; ``lora`` goes to ``LoraConfig`` (``use_dora=True``, say)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=modules, **lora))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "lora_magnitude" in name:
                p.normal_(0, 0.3)
    peft_model.save_pretrained(out)
    return out
