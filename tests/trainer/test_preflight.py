"""Preflight: a job's dry run through a real trainer (a worker process in --preflight mode on the tiny random
Llama), over gRPC and REST. Its counts are checked against counts made here with the tokenizer alone, its
example's marked tokens against the record, its warnings against the configs that must raise them; nothing is
created."""

from __future__ import annotations

import json
import math

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.trainer.conftest import TINY, running_trainer

pytestmark = pytest.mark.slow

DATA = "sft/preflight.jsonl"
MAX_LEN = 128


def records() -> list[dict]:
    """7 short records, 3 whose answer is far beyond MAX_LEN tokens, 1 whose prompt alone is."""
    long_text = " ".join(f"clause{i} binds the party" for i in range(120))
    out = []
    for i in range(11):
        output = long_text if i in (2, 5, 8) else f"The contract clause {i} is void for lack of notice."
        instruction = long_text if i == 9 else "Answer the debate question with the consensus view."
        out.append({"instruction": instruction, "input": f"Question {i}: is clause {i} valid?", "output": output,
                    "metadata": {"debate_id": f"d-{i}", "consensus_confidence": 0.9, "vertical": "legal"}})
    return out


def n_tokens(tokenizer, messages: list[dict], **kw) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, **kw)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def independent_counts(tokenizer, recs: list[dict]) -> tuple[int, int, int]:
    """(examples, truncated, dropped) from the chat template's token counts, at MAX_LEN."""
    examples = truncated = dropped = 0
    for r in recs:
        user = [{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"}]
        prompt = n_tokens(tokenizer, user, add_generation_prompt=True)
        full = n_tokens(tokenizer, user + [{"role": "assistant", "content": r["output"]}])
        if prompt >= MAX_LEN:
            dropped += 1
        else:
            examples += 1
            truncated += full > MAX_LEN
    return examples, truncated, dropped


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory, tiny_models_dir):
    tmp = tmp_path_factory.mktemp("preflight")
    async with running_trainer(tmp, models_dir=tiny_models_dir) as (stub, running):
        path = tmp / "data" / DATA
        path.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
        yield stub, running


async def test_preflight_counts_steps_and_mask(trainer, tiny_models_dir):
    from transformers import AutoTokenizer

    stub, running = trainer
    config = pb.TrainingConfig(dataset_path=DATA, max_seq_length=MAX_LEN, batch_size=4, num_epochs=2,
                               quantization=pb.QUANTIZATION_NONE, gradient_checkpointing=False, lora_r=4)
    resp = await stub.PreflightJob(pb.PreflightJobRequest(vertical="legal", base_model=TINY, training_config=config))

    tokenizer = AutoTokenizer.from_pretrained(tiny_models_dir / TINY.replace("/", "--"))
    examples, truncated, dropped = independent_counts(tokenizer, records())
    assert (examples, truncated, dropped) == (10, 3, 1)  # the data is what this test means it to be
    assert (resp.records, resp.examples, resp.truncated, resp.dropped) == (11, examples, truncated, dropped)
    assert resp.steps_per_epoch == math.ceil(examples / 4) and resp.total_steps == 2 * math.ceil(examples / 4)
    assert resp.longest_example == MAX_LEN
    assert resp.tokens_per_epoch > resp.trained_tokens_per_epoch > 0
    assert resp.tokens_to_train == 2 * resp.tokens_per_epoch  # every batch of both epochs
    assert resp.tokens_per_second > 0 and "timed" in resp.throughput_source
    assert resp.estimated_seconds == pytest.approx(resp.tokens_to_train / resp.tokens_per_second, rel=0.05)
    assert resp.estimated_memory_bytes > 0 and resp.measured_peak_memory_bytes > 0 and resp.device == "cpu"
    assert resp.training_config.max_seq_length == MAX_LEN and resp.training_config.learning_rate == pytest.approx(2e-4)
    assert "dataset_path" in resp.source
    # The first record rendered: its prompt not trained, its answer (and end of turn) trained.
    first = records()[0]
    prompt = "".join(s.text for s in resp.example if not s.trained)
    answer = "".join(s.text for s in resp.example if s.trained)
    assert first["input"] in prompt and first["output"] not in prompt
    assert answer.startswith(first["output"]) and first["instruction"] not in answer
    user = [{"role": "user", "content": f"{first['instruction']}\n\n{first['input']}"}]
    assert sum(s.tokens for s in resp.example if not s.trained) == n_tokens(tokenizer, user,
                                                                             add_generation_prompt=True)
    assert any("3 of 10 examples are longer than max_seq_length 128" in w for w in resp.warnings)
    assert any("1 of 11 records are dropped" in w for w in resp.warnings)
    assert not any("gradient checkpointing" in w or "partial batch" in w for w in resp.warnings)
    # Nothing was created, nothing left behind.
    assert (await stub.ListJobs(pb.ListJobsRequest())).total == 0
    assert not any((running.manager.jobs_dir / ".preflight").iterdir())


async def test_preflight_warnings_rest_and_refusals(trainer):
    stub, running = trainer
    async with gateway_client("127.0.0.1:1", running.address) as api:
        r = await api.post("/api/training/jobs/preflight", json={
            "baseModel": TINY, "vertical": "legal", "datasetPath": DATA, "maxSeqLength": MAX_LEN,
            "batchSize": 16, "maxSteps": 1, "quantization": "4bit", "gradientCheckpointing": True})
        assert r.status_code == 200, r.text
        body = r.json()
        warnings = "\n".join(body["warnings"])
        assert "only 10 examples for batch_size 16" in warnings
        assert "gradient checkpointing recomputes every layer" in warnings
        assert "4bit quantization on a CPU" in warnings and "consider quantization none" in warnings
        assert body["total_steps"] == 1 and body["examples"] == 10
        assert [s["trained"] for s in body["example"]] == [False, True]

        r = await api.post("/api/training/jobs/preflight", json={"baseModel": TINY, "batchSize": 0})
        assert r.status_code == 422 and "batch_size" in r.text
    with pytest.raises(grpc.aio.AioRpcError) as err:
        # No dataset and no exporter: the data cannot be fetched.
        await stub.PreflightJob(pb.PreflightJobRequest(base_model=TINY, training_config=pb.TrainingConfig(
            max_seq_length=MAX_LEN, quantization=pb.QUANTIZATION_NONE)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "preflight failed" in err.value.details() and "exporter" in err.value.details()
    assert (await stub.ListJobs(pb.ListJobsRequest())).total == 0


async def test_preflight_of_a_dpo_job(trainer):
    from tests.eval.conftest import known_pairs

    stub, running = trainer
    pairs = known_pairs(6, seed=1)
    (running.manager.data_root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    resp = await stub.PreflightJob(pb.PreflightJobRequest(base_model=TINY, training_config=pb.TrainingConfig(
        method=pb.TRAINING_METHOD_DPO, dataset_path="pairs.jsonl", max_seq_length=MAX_LEN, batch_size=2,
        num_epochs=1, quantization=pb.QUANTIZATION_NONE, gradient_checkpointing=False, lora_r=4)))
    assert (resp.records, resp.examples, resp.total_steps) == (6, 6, 3)
    assert resp.tokens_per_second > 0 and resp.estimated_seconds > 0
    prompt = "".join(s.text for s in resp.example if not s.trained)
    chosen = "".join(s.text for s in resp.example if s.trained)
    assert pairs[0]["prompt"] in prompt and chosen.startswith(pairs[0]["chosen"])
