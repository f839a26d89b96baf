"""Generate over real gRPC: base model, a completed job's adapter, a checkpoint; sampling; errors; cancel."""

from __future__ import annotations

import grpc
import pytest

from aragora.training.v1 import inference_pb2 as ipb
from tests.inference.conftest import TINY, chat, generate
from tests.support.wait import until as wait_for

pytestmark = pytest.mark.slow


async def test_base_adapter_and_checkpoint_answer_with_counts(served):
    infer, job = served["infer"], served["job"]
    started, text, done = await generate(infer, TINY)
    assert started.base_model == TINY and started.job_id == "" and started.prompt_tokens > 5
    assert done.prompt_tokens == started.prompt_tokens and done.text == text
    assert done.finish_reason in (ipb.FINISH_REASON_STOP, ipb.FINISH_REASON_LENGTH)
    assert 0 < done.completion_tokens <= 12 or done.finish_reason == ipb.FINISH_REASON_STOP

    a_started, _, _ = await generate(infer, job.id)
    assert a_started.job_id == job.id and a_started.base_model == TINY
    assert a_started.prompt_tokens == started.prompt_tokens

    c_started, _, _ = await generate(infer, job.id, checkpoint_step=3)
    assert c_started.checkpoint_step == 3 and c_started.job_id == job.id

    # One base in memory for the base model, the adapter and the checkpoint.
    loaded = served["running"].inference.engine.loaded()
    assert list(loaded) == [TINY] and set(loaded[TINY]) == {job.id, f"{job.id}@3"}

    # The adapter changes the answer's distribution: its greedy answer (or its first steps) differ from the
    # base's at some prompt, and base_only gives the base's answer with the adapter loaded.
    _, b_text, _ = await generate(infer, job.id, base_only=True)
    assert b_text == text


async def test_the_adapter_is_not_the_base(served):
    infer, job = served["infer"], served["job"]
    differ = False
    for prompt in ("Should the court rule?", "Is the clause void?", "What is the risk of the trial?"):
        _, base, _ = await generate(infer, TINY, messages=chat(prompt))
        _, adapted, _ = await generate(infer, job.id, messages=chat(prompt))
        differ |= base != adapted
    assert differ


async def test_the_same_seed_gives_the_same_answer(served):
    infer = served["infer"]
    sampling = ipb.SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    s1, t1, _ = await generate(infer, TINY, sampling=sampling)
    _, t2, _ = await generate(infer, TINY, sampling=sampling)
    assert s1.seed == 7 and t1 == t2
    picked, _, _ = await generate(infer, TINY, sampling=ipb.SamplingParams(max_new_tokens=2))
    assert picked.seed >= 0


async def test_max_new_tokens_and_stop_strings(served):
    infer = served["infer"]
    sampling = ipb.SamplingParams(max_new_tokens=20, temperature=1.0, seed=3)
    _, text, done = await generate(infer, TINY, sampling=sampling)
    if done.finish_reason == ipb.FINISH_REASON_LENGTH:
        assert done.completion_tokens == 20
    assert len(text) > 4
    stop = text[2:4]
    _, cut, done2 = await generate(infer, TINY, sampling=ipb.SamplingParams(max_new_tokens=20, temperature=1.0,
                                                                               seed=3, stop=[stop]))
    assert done2.finish_reason == ipb.FINISH_REASON_STOP and stop not in cut and text.startswith(cut)
    assert cut == text[:text.index(stop)]


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    return err.value


async def test_bad_input_names_the_field(served):
    infer, job, queued = served["infer"], served["job"], served["queued"]
    req = ipb.GenerateRequest
    e = await _error(infer.Generate(req(model="no/such-model", messages=chat())))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "no/such-model" in e.details()
    e = await _error(infer.Generate(req(model="job-doesnotexist", messages=chat())))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = await _error(infer.Generate(req(model=queued.id, messages=chat())))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "queued" in e.details()
    e = await _error(infer.Generate(req(model=job.id, checkpoint_step=5, messages=chat())))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "step 5" in e.details()
    e = await _error(infer.Generate(req(model=TINY, messages=chat(), sampling=ipb.SamplingParams(max_new_tokens=5000))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "sampling.max_new_tokens" in e.details()
    e = await _error(infer.Generate(req(model=TINY, messages=chat(),
                                        sampling=ipb.SamplingParams(temperature=3, top_p=0))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.temperature" in e.details() and "sampling.top_p" in e.details()
    e = await _error(infer.Generate(req(model=TINY)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "messages" in e.details()
    e = await _error(infer.Generate(req(model=TINY, messages=[ipb.ChatMessage(role="robot", content="x")])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "messages[0].role" in e.details()
    long = "the court " * 400  # beyond the tiny model's 512-token context
    e = await _error(infer.Generate(req(model=TINY, messages=chat(long))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "messages" in e.details() and "context" in e.details()


async def test_a_cancelled_call_stops_its_generation(served):
    infer, engine = served["infer"], served["running"].inference.engine
    sampling = ipb.SamplingParams(max_new_tokens=400, temperature=1.0, seed=11)
    # Uncancelled, this seed runs to its length limit (or a full context): hundreds of steps.
    _, _, whole = await generate(infer, TINY, sampling=sampling)
    call = infer.Generate(ipb.GenerateRequest(model=TINY, messages=chat(), sampling=sampling))
    async for item in call:
        if item.WhichOneof("item") == "delta":
            break
    call.cancel()
    await wait_for(lambda: engine.running == 0, timeout=30, what="the generation to stop")
    reason, tokens = engine.finished[-1]
    assert reason == "cancelled" and tokens < whole.completion_tokens


async def test_each_adapter_answers_as_plain_peft_does(served, tiny_models_dir):
    """Served greedy answers equal transformers + PEFT generate with that one adapter, for adapters attached
    to the shared base in either order (the final adapter and a checkpoint), and for the base."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    infer, job = served["infer"], served["job"]
    folder = served["running"].manager.jobs_dir / job.id
    base_dir = tiny_models_dir / TINY.replace("/", "--")
    tok = AutoTokenizer.from_pretrained(base_dir)
    messages = [{"role": "user", "content": "Is the clause void because of the risk?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def reference(adapter_dir) -> str:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        if adapter_dir is not None:
            model = PeftModel.from_pretrained(model, adapter_dir)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=10, do_sample=False, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    sampling = ipb.SamplingParams(max_new_tokens=10, temperature=0.0)
    prompt = chat(messages[0]["content"])
    for model, step, adapter_dir in ((job.id, 6, folder / "checkpoints" / "checkpoint-6"),
                                     (job.id, 3, folder / "checkpoints" / "checkpoint-3"),
                                     (job.id, 0, folder / "adapter"), (TINY, 0, None)):
        _, text, _ = await generate(infer, model, checkpoint_step=step, messages=prompt, sampling=sampling)
        assert text == reference(adapter_dir), (model, step)


async def test_concurrent_streams_answer_as_they_do_alone(served):
    """Streams sent at once (the base, the adapter, a checkpoint; greedy and seeded sampling), which the engine
    decodes in shared batches as they overlap, give each the answer it gives alone. (That they do share
    forwards is pinned down without gRPC timing in test_batching.py.)"""
    import asyncio

    infer, job = served["infer"], served["job"]
    runs = [
        dict(model=TINY, messages=chat("Is the clause void?")),
        dict(model=job.id, messages=chat("Should the court rule on the contract, given the statute?")),
        dict(model=job.id, checkpoint_step=3, messages=chat("Why?")),
        dict(model=job.id, base_only=True, messages=chat("What is the risk of the trial?"),
             sampling=ipb.SamplingParams(max_new_tokens=14, temperature=0.9, top_p=0.95, seed=21)),
        dict(model=TINY, messages=chat("What is the risk of the trial?"),
             sampling=ipb.SamplingParams(max_new_tokens=6, temperature=0.0)),
    ]
    alone = [await generate(infer, **dict(kw)) for kw in runs]
    together = await asyncio.gather(*[generate(infer, **dict(kw)) for kw in runs])
    for one, many in zip(alone, together, strict=True):
        assert many[1] == one[1] and many[2] == one[2]
