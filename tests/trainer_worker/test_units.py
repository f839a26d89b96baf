"""In-process pieces of the worker: batch order, chat-template encoding with response-only labels, the loss."""

from __future__ import annotations

import random

import pytest

from services.trainer.worker.batching import batch_order, padding_ratio, steps_per_epoch
from tests.trainer_worker.conftest import sft_records


def test_batch_order_covers_every_example_once_seeded_and_grouped_by_length():
    rng = random.Random(1)
    lengths = [rng.randint(5, 500) for _ in range(103)]
    batches = batch_order(lengths, 4, seed=42, epoch=0)
    assert len(batches) == steps_per_epoch(103, 4) == 26
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert batches == batch_order(lengths, 4, seed=42, epoch=0)  # a resumed job replays the same order
    assert batches != batch_order(lengths, 4, seed=42, epoch=1)
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest batch first: OOM at step 1
    shuffled = list(range(103))
    random.Random(0).shuffle(shuffled)
    plain = [shuffled[k:k + 4] for k in range(0, 103, 4)]
    assert padding_ratio(lengths, batches) < 0.1 < padding_ratio(lengths, plain)


@pytest.fixture(scope="module")
def tok_model(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoTokenizer.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(tiny_model)


def test_encoding_trains_on_the_response_only(tok_model):
    from services.trainer.worker.encoding import IGNORE_INDEX, encode_records

    tok, _ = tok_model
    records = sft_records(6)
    encoded, stats = encode_records(tok, records, max_len=512)
    assert stats.template == "chat" and stats.truncated == 0 and stats.dropped == []
    for rec, enc in zip(records, encoded):
        labels = enc.labels
        assert labels[:enc.prompt_len] == [IGNORE_INDEX] * enc.prompt_len
        assert IGNORE_INDEX not in labels[enc.prompt_len:]
        prompt = tok.decode(enc.input_ids[:enc.prompt_len])
        trained = tok.decode(labels[enc.prompt_len:])
        assert prompt.endswith("<|im_start|>assistant\n") and rec["input"] in prompt and rec["instruction"] in prompt
        assert trained == rec["output"] + tok.eos_token  # the answer and the end of turn, nothing else


def test_truncation_and_records_without_room_for_an_answer(tok_model):
    from services.trainer.worker.encoding import encode_records

    tok, _ = tok_model
    long = {"instruction": "Answer.", "input": "short?", "output": " ".join(["contract"] * 300)}
    huge_prompt = {"instruction": "Answer.", "input": " ".join(["court"] * 400), "output": "yes"}
    encoded, stats = encode_records(tok, [long, huge_prompt], max_len=64)
    assert stats.dropped == [1] and stats.truncated == 1
    assert len(encoded) == 1 and len(encoded[0].input_ids) == 64 and encoded[0].truncated


def test_response_only_loss_equals_the_causal_lm_loss_with_masked_labels(tok_model):
    import torch

    from services.trainer.worker.encoding import collate, encode_records
    from services.trainer.worker.logprobs import response_only_loss

    tok, model = tok_model
    encoded, _ = encode_records(tok, sft_records(5, seed=3), max_len=512)
    batch = collate(encoded, tok.pad_token_id)
    assert batch["attention_mask"] is not None  # different lengths: padded
    assert batch["tokens"] == sum(len(e.input_ids) for e in encoded)
    ours, n = response_only_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert n == sum(len(e.input_ids) - e.prompt_len for e in encoded)
    assert torch.allclose(ours, ref, atol=1e-5), (ours, ref)

    # The prompt tokens do not count: changing them changes the context, not the targets. Putting every label
    # to -100 except one token gives exactly that token's negative log-likelihood.
    labels = torch.full_like(batch["labels"], -100)
    row, pos = 0, encoded[0].prompt_len + 1
    labels[row, pos] = batch["input_ids"][row, pos]
    one, n1 = response_only_loss(model, batch["input_ids"], batch["attention_mask"], labels)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    nll = -torch.log_softmax(logits[row, pos - 1], -1)[batch["input_ids"][row, pos]]
    assert n1 == 1 and torch.allclose(one, nll, atol=1e-5)


def test_spec_to_lora_config():
    from services.trainer.spec import TrainingSpec

    cfg = TrainingSpec(lora_r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "k_proj"]).to_lora_config()
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, sorted(cfg.target_modules)) == (4, 8.0, 0.1, ["k_proj", "q_proj"])
    assert cfg.task_type == "CAUSAL_LM"


def test_schedule_counts_steps_once_for_the_loop_and_the_events():
    from services.trainer.worker.batching import Schedule

    assert Schedule(10, 4, 3, seed=0).steps_per_epoch == 3  # 4 + 4 + 2
    assert Schedule(10, 4, 3, seed=0).total_steps == 9
    assert Schedule(10, 4, 3, seed=0, max_steps=5).total_steps == 5
    assert Schedule(10, 4, 3, seed=0, max_steps=50).total_steps == 9  # max_steps never adds steps
    lengths = list(range(1, 11))
    # One step of 4 uses exactly the first batch of the seeded order; a full run uses every example.
    assert Schedule(10, 4, 3, seed=0, max_steps=1).used_indices(lengths) == sorted(batch_order(lengths, 4, 0, 0)[0])
    assert Schedule(10, 4, 3, seed=0).used_indices(lengths) == list(range(10))


def test_training_methods_are_found_by_name_and_an_unknown_one_is_refused():
    from services.trainer.worker import methods, sources
    from services.trainer.worker.job import WorkerError

    assert methods.names() == ["dpo", "reward", "sft"]
    assert methods.get("sft").records is sources.SFT_RECORDS
    assert methods.get("dpo").records is sources.DPO_PAIRS
    assert methods.get("reward").records is sources.DPO_PAIRS
    with pytest.raises(WorkerError, match=r"^training_config.method 'ppo': this worker has no such training "
                                          r"method \(it has: dpo, reward, sft\)$"):
        methods.get("ppo")


def test_finding_a_method_and_reading_its_data_imports_no_ml_library():
    """Bad data or a dead exporter must fail a job before torch/transformers load (seconds, not a minute)."""
    import subprocess
    import sys

    from tests.trainer_worker.conftest import REPO

    code = ("import sys\n"
            "from services.trainer.worker import methods, sources\n"
            "for name in methods.names(): methods.get(name)\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_missing_or_unreadable_data_is_named_without_the_servers_paths(tmp_path, tiny_model):
    """A dataset file removed after the job was created, and a resumed job's saved data that cannot be read:
    the failure (shown to API users) names the file as the user or the job knows it, not where the server
    keeps it."""
    import io
    import json

    from services.trainer.worker.events import EventSink
    from services.trainer.worker.job import JobConfig, WorkerError
    from services.trainer.worker.sources import SFT_RECORDS, load_training_records, read_jsonl
    from tests.trainer_worker.conftest import make_job, write_jsonl

    data_root = tmp_path / "data"
    write_jsonl(data_root / "sets" / "a.jsonl", sft_records(4))
    job_dir = make_job(tmp_path, "j1", tiny_model, {"dataset_path": "sets/a.jsonl"}, data_root=data_root)
    (data_root / "sets" / "a.jsonl").unlink()
    events = EventSink(io.StringIO())
    with pytest.raises(WorkerError) as exc:
        load_training_records(JobConfig.load(job_dir), events, SFT_RECORDS)
    assert str(exc.value) == "training_config.dataset_path: no such file in the data root: sets/a.jsonl"

    job = json.loads((job_dir / "job.json").read_text())
    (job_dir / "job.json").write_text(json.dumps(dict(job, resume=True)))
    saved = job_dir / "data" / "train.jsonl"  # what a resumed job reads back: here damaged
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(json.dumps(sft_records(1)[0]).encode() + b"\n" + b'{"instruction": "caf\xe9"}\n')
    with pytest.raises(WorkerError) as exc:
        load_training_records(JobConfig.load(job_dir), events, SFT_RECORDS)
    assert str(exc.value) == "the job's data/train.jsonl: 1 bad record: line 2: not UTF-8 text (byte 21 of the line)"
    assert str(tmp_path) not in str(exc.value)

    with pytest.raises(WorkerError) as exc:  # a file that cannot be opened (a folder in its place)
        read_jsonl(tmp_path, SFT_RECORDS, label="dataset_path x.jsonl")
    assert str(exc.value) == "dataset_path x.jsonl: cannot read the file: Is a directory"
