"""What makes the worker fast must not change what it learns.

- The response-only loss (decoder, then the LM head on the response positions only) gives the same loss AND the
  same LoRA gradients as the plain causal-LM loss over full-vocabulary logits with prompt labels masked.
- Length-grouped batching trains every token of every example exactly once per epoch, with padding that reaches
  neither the attention nor the loss.
- The product's loop and TRL's trainers, given the same tokens, batches, LoRA init and schedule, produce the same
  per-step losses (SFT and DPO, LoRA dropout 0 so that no random mask differs: the product shares one dropout
  mask across a batch's rows for their common prefix, see ``logprobs.py``) — run through
  ``benchmarks/train_bench.py`` itself, so the benchmark's comparison is tested too.
- A batch's common prefix (chat header, instruction) run once gives the loss and gradients of the plain batch;
  so does a DPO pair's prompt run once for both answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.speed.conftest import sft_records

REPO = Path(__file__).resolve().parents[2]


def _lora_model(model_path: Path, dropout: float = 0.0):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from services.trainer.spec import TrainingSpec

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.config.use_cache = False
    torch.manual_seed(0)
    peft_model = get_peft_model(model, TrainingSpec(lora_dropout=dropout).to_lora_config())
    # A fresh LoRA B is zero, which would make every gradient but B's zero: move it off zero.
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    peft_model.train()
    return peft_model


def _graph_has(tensor, name: str) -> bool:
    """Whether the autograd graph behind ``tensor`` holds a node whose type name contains ``name``."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if name in type(fn).__name__:
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False


@pytest.mark.parametrize("chunk_rows", [128, 7])  # 7: many chunks of the LM head, the last one partial
def test_response_only_loss_has_the_plain_causal_lm_loss_and_gradients(tiny_model, monkeypatch, chunk_rows):
    import torch

    from services.trainer.worker import logprobs

    monkeypatch.setattr(logprobs, "LM_HEAD_CHUNK_ROWS", chunk_rows)

    from services.trainer.worker.encoding import collate, encode_records
    from services.trainer.worker.logprobs import response_only_loss
    from services.trainer.worker.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model)
    encoded, _ = encode_records(tok, sft_records(6, seed=5), max_len=512)
    batch = collate(encoded, tok.pad_token_id)
    assert batch["attention_mask"] is not None  # the examples differ in length: a padded batch
    model = _lora_model(tiny_model)
    params = [p for p in model.parameters() if p.requires_grad]

    fast, trained = response_only_loss(model.get_base_model(), batch["input_ids"], batch["attention_mask"],
                                       batch["labels"])
    fast_grads = torch.autograd.grad(fast, params)
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    plain_grads = torch.autograd.grad(plain, params)

    assert trained == sum(len(e.input_ids) - e.prompt_len for e in encoded)
    if chunk_rows < 128:
        assert trained > 2 * chunk_rows and trained % chunk_rows  # several chunks, the last one partial
    assert _graph_has(fast, "ChunkedTokenLogps")
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6), (float(fast), float(plain))
    assert any(float(g.abs().max()) > 0 for g in plain_grads)
    for a, b in zip(fast_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7), float((a - b).abs().max())


def test_a_trained_lm_head_takes_the_plain_loss(tiny_model):
    """A head that takes a gradient (``modules_to_save``) is not the frozen head ``chunked_token_logps`` is
    for: the loss is the plain one and the head's weight gets its gradient."""
    import torch

    from services.trainer.worker.encoding import collate, encode_records
    from services.trainer.worker.logprobs import response_only_loss
    from services.trainer.worker.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model)
    encoded, _ = encode_records(tok, sft_records(4, seed=2), max_len=512)
    batch = collate(encoded, tok.pad_token_id)
    causal = _lora_model(tiny_model).get_base_model()
    head = causal.get_output_embeddings()
    head.weight.requires_grad_(True)
    loss, _ = response_only_loss(causal, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert not _graph_has(loss, "ChunkedTokenLogps")
    (grad,) = torch.autograd.grad(loss, [head.weight])
    assert float(grad.abs().max()) > 0


def test_shared_prompt_pair_logps_equal_two_separate_sequences(tiny_model):
    """DPO runs a pair's prompt once (``pair_logps``: one packed row, a 4-D mask that hides the chosen answer
    from the rejected one, positions restarting after the prompt). Log-probabilities, token counts and LoRA
    gradients equal those of the chosen and rejected sequences computed separately (``sequence_logps``)."""
    import torch

    from services.trainer.worker.encoding import encode_pairs
    from services.trainer.worker.logprobs import pair_logps, sequence_logps
    from services.trainer.worker.modeling import load_tokenizer
    from tests.speed.conftest import dpo_pairs

    tok = load_tokenizer(tiny_model)
    pairs, _ = encode_pairs(tok, dpo_pairs(5, seed=3), max_len=512)
    pairs.append(type(pairs[0])(pairs[0].prompt, pairs[0].chosen[:1], pairs[0].rejected[:1]))  # 1-token answers
    assert len({p.length for p in pairs}) > 2  # rows of different widths: the batch is padded
    model = _lora_model(tiny_model)
    causal = model.get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    cpu = torch.device("cpu")

    shared, shared_counts = pair_logps(causal, pairs, tok.pad_token_id, cpu)
    separate, separate_counts = sequence_logps(
        causal, [p.sequences()[0] for p in pairs] + [p.sequences()[1] for p in pairs], tok.pad_token_id, cpu)
    assert torch.equal(shared_counts, separate_counts)
    assert shared_counts.tolist() == [len(p.chosen) for p in pairs] + [len(p.rejected) for p in pairs]
    assert torch.allclose(shared, separate, rtol=1e-5, atol=1e-4), (shared - separate).abs().max()
    weights = torch.linspace(1.0, 2.0, len(shared))  # a loss that weighs every value differently
    shared_grads = torch.autograd.grad((shared * weights).sum(), params)
    separate_grads = torch.autograd.grad((separate * weights).sum(), params)
    assert any(float(g.abs().max()) > 0 for g in separate_grads)
    for a, b in zip(shared_grads, separate_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), float((a - b).abs().max())

    # Either answer may sit second in the row: swapping them swaps the values.
    with torch.no_grad():
        swapped = [type(p)(p.prompt, p.rejected, p.chosen) for p in pairs]
        again, _ = pair_logps(causal, swapped, tok.pad_token_id, cpu)
    n = len(pairs)
    assert torch.allclose(again[:n], separate[n:].detach(), rtol=1e-5, atol=1e-4)
    assert torch.allclose(again[n:], separate[:n].detach(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chunk_rows", [128, 7])
def test_pair_and_sequence_logps_through_the_chunked_head_equal_full_logits(tiny_model, monkeypatch, chunk_rows):
    """DPO's packed pairs, and sequences as the reference pass and the evaluation score them: the head's
    log-probabilities a chunk of rows at a time (``chunked_token_logps``, each row's gradient made in the
    forward and scaled by its own incoming gradient in the backward) give the values and LoRA gradients of
    full-vocabulary logits; under ``no_grad`` no gradient is made."""
    import torch

    from services.trainer.worker import logprobs
    from services.trainer.worker.encoding import encode_pairs
    from services.trainer.worker.logprobs import pair_logps, sequence_logps
    from services.trainer.worker.modeling import load_tokenizer
    from tests.speed.conftest import dpo_pairs

    monkeypatch.setattr(logprobs, "LM_HEAD_CHUNK_ROWS", chunk_rows)
    tok = load_tokenizer(tiny_model)
    pairs, _ = encode_pairs(tok, dpo_pairs(6, seed=4), max_len=512)
    model = _lora_model(tiny_model)
    causal = model.get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    cpu = torch.device("cpu")
    seqs = [p.sequences()[0] for p in pairs]
    weights = torch.linspace(-1.0, 2.0, 2 * len(pairs))  # a different weight for every sequence, signs too

    def run():
        sums, _ = pair_logps(causal, pairs, tok.pad_token_id, cpu)
        singles, _ = sequence_logps(causal, seqs, tok.pad_token_id, cpu)
        loss = (sums * weights).sum() + (singles * weights[:len(seqs)]).sum()
        return sums, singles, torch.autograd.grad(loss, params), loss

    chunked = run()
    assert _graph_has(chunked[3], "ChunkedTokenLogps")
    scored = sum(len(p.chosen) + len(p.rejected) for p in pairs)
    if chunk_rows < 128:
        assert scored > 2 * chunk_rows and scored % chunk_rows  # several chunks, the last one partial
    monkeypatch.setattr(logprobs, "_frozen_plain_head", lambda causal_lm: None)  # full logits
    plain = run()
    assert not _graph_has(plain[3], "ChunkedTokenLogps")
    for a, b in zip(chunked[:2], plain[:2]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-4), float((a - b).abs().max())
    assert any(float(g.abs().max()) > 0 for g in plain[2])
    for a, b in zip(chunked[2], plain[2]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), float((a - b).abs().max())
    monkeypatch.undo()

    from services.trainer.worker import cpu_linear  # the chunked head's matmuls, counted

    made, real = [], cpu_linear.linear
    monkeypatch.setattr(cpu_linear, "linear", lambda x, w, b=None: made.append(tuple(w.shape)) or real(x, w, b))
    logprobs._chunked_token_logps_class.cache_clear()
    try:
        with torch.no_grad():
            sequence_logps(causal, seqs, tok.pad_token_id, cpu)
        head = tuple(causal.get_output_embeddings().weight.shape)
        assert made and set(made) == {head}  # only the head's forward: no gradient through W^T
    finally:
        monkeypatch.undo()
        logprobs._chunked_token_logps_class.cache_clear()


def _long_instruction_records(n: int, seed: int) -> list[dict]:
    """SFT records whose prompts share a long start (the chat header and a fixed instruction), as debate records
    do, with varied questions and answers."""
    records = sft_records(n, seed=seed)
    for r in records:
        r["instruction"] = ("Analyze the following debate topic and give the answer a panel of expert agents "
                            "reached by consensus, stating your assumptions.")
    return records


def test_shared_prefix_runs_once_with_the_plain_loss_and_gradients(tiny_model, monkeypatch):
    """The batch's common start runs once (a batch of one, its keys/values repeated for every row): the loss and
    the LoRA gradients equal the plain padded batch's, and the decoder sees (batch - 1) x prefix fewer tokens."""
    import torch

    from services.trainer.worker import logprobs as prefix_mod
    from services.trainer.worker.encoding import encode_records
    from services.trainer.worker.methods.sft import SFTMethod
    from services.trainer.worker.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model)
    encoded, _ = encode_records(tok, _long_instruction_records(5, seed=11), max_len=512)
    model = _lora_model(tiny_model)
    params = [p for p in model.parameters() if p.requires_grad]
    objective = SFTMethod(encoded, tok.pad_token_id, torch.device("cpu"))
    prefix = prefix_mod.shared_prefix_len([e.input_ids for e in encoded], 10**6)
    assert prefix >= 20  # the chat header and the instruction
    widths: list[int] = []
    hook = model.get_base_model().get_decoder().register_forward_hook(
        lambda module, args, kwargs, out: widths.append(kwargs["input_ids"].numel()), with_kwargs=True)
    try:
        indices = list(range(len(encoded)))
        shared = objective.step(model.get_base_model(), indices)
        shared_grads = torch.autograd.grad(shared.loss, params)
        shared_widths, widths[:] = list(widths), []
        monkeypatch.setattr(prefix_mod, "MIN_SHARED_PREFIX", 10**9)  # sharing off: the plain padded batch
        plain = objective.step(model.get_base_model(), indices)
        plain_grads = torch.autograd.grad(plain.loss, params)
    finally:
        hook.remove()
    width = max(len(e.input_ids) for e in encoded)
    assert widths == [len(encoded) * width]
    assert shared_widths == [prefix, len(encoded) * (width - prefix)]
    assert shared.trained_tokens == plain.trained_tokens and shared.tokens == plain.tokens
    assert torch.allclose(shared.loss, plain.loss, rtol=1e-5, atol=1e-6), (float(shared.loss), float(plain.loss))
    for a, b in zip(shared_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), float((a - b).abs().max())


def test_shared_prefix_of_dpo_pairs_and_held_out_sequences(tiny_model, monkeypatch):
    """DPO pairs whose prompts share a start: ``pair_logps`` (packed rows on top of the shared prefix) and
    ``sequence_logps`` give the values and gradients of the separate sequences with sharing off."""
    import torch

    from services.trainer.worker import logprobs as prefix_mod
    from services.trainer.worker.encoding import encode_pairs
    from services.trainer.worker.logprobs import pair_logps, sequence_logps
    from services.trainer.worker.modeling import load_tokenizer
    from tests.speed.conftest import dpo_pairs

    tok = load_tokenizer(tiny_model)
    records = dpo_pairs(4, seed=8)
    for r in records:
        r["prompt"] = "Analyze the following debate topic and state your assumptions. " + r["prompt"]
    pairs, _ = encode_pairs(tok, records, max_len=512)
    assert prefix_mod.shared_prefix_len([p.prompt for p in pairs], 10**6) >= 10
    model = _lora_model(tiny_model)
    causal = model.get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    cpu = torch.device("cpu")
    seqs = [p.sequences()[0] for p in pairs] + [p.sequences()[1] for p in pairs]
    weights = torch.linspace(1.0, 2.0, 2 * len(pairs))

    def run():
        packed, _ = pair_logps(causal, pairs, tok.pad_token_id, cpu)
        separate, _ = sequence_logps(causal, seqs, tok.pad_token_id, cpu)
        return packed, separate, torch.autograd.grad((packed * weights).sum(), params)

    packed, separate, grads = run()
    monkeypatch.setattr(prefix_mod, "MIN_SHARED_PREFIX", 10**9)
    plain_packed, plain, plain_grads = run()
    assert torch.allclose(plain_packed, plain, rtol=1e-5, atol=1e-4)
    assert torch.allclose(packed, plain, rtol=1e-5, atol=1e-4), (packed - plain).abs().max()
    assert torch.allclose(separate, plain, rtol=1e-5, atol=1e-4), (separate - plain).abs().max()
    for a, b in zip(grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), float((a - b).abs().max())


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_shared_prefix_under_gradient_checkpointing_has_the_plain_loss_and_gradients(tiny_model, monkeypatch,
                                                                                    dropout):
    """With gradient checkpointing the prefix runs once too (unchecked, one row) and the rest runs checkpointed
    on a read-only view of its cache: the loss and LoRA gradients equal the plain checkpointed batch's and the
    unchecked shared-prefix batch's; the decoder sees the prefix once. With LoRA dropout the replay draws the
    same masks (checkpointing restores the RNG), so the checkpointed shared step equals the unchecked one."""
    import torch

    from services.trainer.worker import logprobs as prefix_mod
    from services.trainer.worker.encoding import encode_records
    from services.trainer.worker.methods.sft import SFTMethod
    from services.trainer.worker.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model)
    encoded, _ = encode_records(tok, _long_instruction_records(4, seed=2), max_len=512)
    model = _lora_model(tiny_model, dropout=dropout)
    causal = model.get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    objective = SFTMethod(encoded, tok.pad_token_id, torch.device("cpu"))
    indices = list(range(len(encoded)))
    prefix = prefix_mod.batch_prefix_len(encoded)
    assert prefix >= 20
    widths: list[int] = []
    hook = causal.get_decoder().register_forward_hook(
        lambda module, args, kwargs, out: widths.append(kwargs["input_ids"].numel()), with_kwargs=True)

    def step():
        torch.manual_seed(5)  # the same dropout masks in every variant (rows share the prefix's mask)
        out = objective.step(causal, indices)
        return out.loss, torch.autograd.grad(out.loss, params)

    try:
        unchecked_loss, unchecked_grads = step()
        causal.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        decoder = causal.get_decoder()
        assert prefix_mod.checkpointing(decoder) and prefix_mod.can_share(decoder)
        widths.clear()
        shared_loss, shared_grads = step()
        shared_widths = list(widths)
        assert all(layer.gradient_checkpointing for layer in decoder.layers)  # restored after the prefix
        assert not any("_can_checkpoint_with_cache" in layer.__dict__ for layer in decoder.layers)
        monkeypatch.setattr(prefix_mod, "MIN_SHARED_PREFIX", 10**9)  # sharing off: the plain checkpointed batch
        widths.clear()
        plain_loss, plain_grads = step()
        plain_widths = list(widths)
    finally:
        hook.remove()
    width = max(len(e.input_ids) for e in encoded)
    assert shared_widths == [prefix, len(encoded) * (width - prefix)]
    assert plain_widths == [len(encoded) * width]
    assert any(float(g.abs().max()) > 0 for g in plain_grads)
    assert torch.allclose(shared_loss, unchecked_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(shared_grads, unchecked_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), float((a - b).abs().max())
    if dropout == 0:  # (with dropout the plain batch draws its own masks for the prefix of each row)
        assert torch.allclose(shared_loss, plain_loss, rtol=1e-5, atol=1e-6)
        for a, b in zip(shared_grads, plain_grads):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), float((a - b).abs().max())


def test_grouped_batches_train_every_token_once_per_epoch(tiny_model):
    import torch

    from services.trainer.worker.batching import batch_order
    from services.trainer.worker.encoding import IGNORE_INDEX, collate, encode_records
    from services.trainer.worker.modeling import load_tokenizer

    tok = load_tokenizer(tiny_model)
    encoded, _ = encode_records(tok, sft_records(23, seed=7), max_len=512)
    lengths = [len(e.input_ids) for e in encoded]
    for epoch in range(2):
        seen_inputs, seen_targets = {}, {}
        padded = real = 0
        for indices in batch_order(lengths, 4, seed=42, epoch=epoch):
            batch = collate([encoded[i] for i in indices], tok.pad_token_id)
            mask = batch["attention_mask"]
            if mask is None:
                mask = torch.ones_like(batch["input_ids"])
            padded += batch["input_ids"].numel()
            real += int(mask.sum())
            for row, i in enumerate(indices):
                assert i not in seen_inputs  # each example once per epoch
                n = int(mask[row].sum())
                assert bool(mask[row, :n].all()) and not bool(mask[row, n:].any())  # right padding only
                seen_inputs[i] = batch["input_ids"][row, :n].tolist()
                # Padding positions never carry a target.
                assert bool((batch["labels"][row, n:] == IGNORE_INDEX).all())
                seen_targets[i] = [t for t in batch["labels"][row].tolist() if t != IGNORE_INDEX]
        assert seen_inputs == {i: e.input_ids for i, e in enumerate(encoded)}
        assert seen_targets == {i: e.input_ids[e.prompt_len:] for i, e in enumerate(encoded)}
        assert real == sum(lengths)
        assert padded - real < 0.25 * padded  # grouped by length: little padding even on 23 varied examples


@pytest.fixture(scope="module")
def bench_report(tiny_model, bench_data, tmp_path_factory) -> dict:
    """One benchmark run on the tiny model: product and TRL, SFT and DPO (no LoRA dropout), few steps."""
    work = tmp_path_factory.mktemp("bench-work")
    out = work / "report.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "train_bench.py"), "--model", "test/tiny-llama",
           "--model-path", str(tiny_model), "--data-dir", str(bench_data), "--work-dir", str(work),
           "--rows", "product-sft,trl-sft-tuned,product-dpo,trl-dpo", "--steps", "4", "--dpo-steps", "3",
           "--max-seq-length", "128", "--lora-dropout", "0", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed_rows"] == {}, report["failed_rows"]
    return report


# -- what the benchmark rows trained on, computed here without the product's encoder ---------------------------

BENCH_SEED, BENCH_BATCH, BENCH_MAX_LEN = 42, 4, 128  # train_bench.py's seed; the fixture's batch size and length


def _fingerprint(rows: list[list[int]]) -> str:
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:10]


def _chat_ids(tok, user: str, answer: str) -> tuple[list[int], int]:
    """``user -> answer`` in the chat template, tokenised in one piece and cut after the end-of-turn token,
    then at the benchmark's max length; and the prompt's token count."""
    messages = [{"role": "user", "content": user}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
    full = full[: full.rindex(tok.eos_token) + len(tok.eos_token)]
    ids = tok(full, add_special_tokens=False)["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ids[:n_prompt] == tok(prompt, add_special_tokens=False)["input_ids"]
    return ids, n_prompt


@pytest.fixture(scope="module")
def bench_batches(bench_report, bench_data, tiny_model) -> dict:
    """The SFT sequences and DPO pairs of the benchmark's data, encoded here with the tokenizer alone, and the
    batches of the first epoch in the product's seeded order (``batching.batch_order``, tested on its own)."""
    from transformers import AutoTokenizer

    from services.trainer.worker.batching import batch_order

    tok = AutoTokenizer.from_pretrained(tiny_model)
    sft = []
    for r in (json.loads(x) for x in (bench_data / "sft.jsonl").read_text().splitlines()):
        ids, n_prompt = _chat_ids(tok, f"{r['instruction']}\n\n{r['input']}", r["output"])
        sft.append((ids[:BENCH_MAX_LEN], n_prompt))
    pairs = []
    for r in (json.loads(x) for x in (bench_data / "dpo.jsonl").read_text().splitlines()):
        chosen, n_prompt = _chat_ids(tok, r["prompt"], r["chosen"])
        rejected, _ = _chat_ids(tok, r["prompt"], r["rejected"])
        pairs.append((chosen[:BENCH_MAX_LEN], rejected[:BENCH_MAX_LEN], n_prompt))
    sft_lengths = [len(ids) for ids, _ in sft]
    pair_lengths = [len(c) + len(r) - n for c, r, n in pairs]  # the prompt once, both answers
    return {"tok": tok, "sft": sft, "pairs": pairs,
            "sft_batches": batch_order(sft_lengths, BENCH_BATCH, BENCH_SEED, 0),
            "dpo_batches": batch_order(pair_lengths, BENCH_BATCH, BENCH_SEED, 0)}


def _base_and_adapter_losses(model_path: Path, adapter: Path, rows: list[tuple[list[int], int]], pad_id: int):
    """The plain transformers causal-LM loss (prompt labels masked) of a batch, base model and base + adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, (seq, n_prompt) in enumerate(rows):
        ids[k, :len(seq)] = torch.tensor(seq)
        labels[k, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
        mask[k, :len(seq)] = 1
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
                                      str(adapter)).eval()
    with torch.no_grad():
        trained = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
        with model.disable_adapter():
            base = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    return base, trained


def test_product_and_trl_sft_learn_the_same_on_the_same_batches(bench_report, bench_batches):
    cmp = bench_report["loss_comparisons"]["product-sft vs trl-sft-tuned"]
    assert cmp["same_batches"] and cmp["steps"] == 4
    # Same tokens, batches, LoRA init, AdamW and LR schedule: equal to rounding.
    assert cmp["max_abs_diff"] < 1e-4, cmp
    sft, batches = bench_batches["sft"], bench_batches["sft_batches"][:4]
    for row in ("product-sft", "trl-sft-tuned"):
        steps = bench_report["runs"][row][0]["steps"]
        # Exactly the first epoch's first four batches of the seeded order, every token counted once.
        assert [s["batch"] for s in steps] == [_fingerprint([sft[i][0] for i in b]) for b in batches], row
        assert [s["tokens"] for s in steps] == [sum(len(sft[i][0]) for i in b) for b in batches], row


def test_product_sft_training_lowers_the_loss(bench_report, bench_batches, tiny_model):
    """The losses above move because training moves them, not because the batches differ: each step's loss
    is below the base model's loss on that same batch from step 2 on (equal at step 1, where LoRA's B is 0),
    and the saved adapter scores the first batch lower than the base does. (Measured: the base-minus-trained
    gaps are 7e-4 to 2e-3 at learning rate 2e-4, well above the 1e-4 to which product and TRL agree.)"""
    sft, batches = bench_batches["sft"], bench_batches["sft_batches"][:4]
    pad = bench_batches["tok"].pad_token_id
    adapter = Path(bench_report["config"]["work"]) / "job-product-sft" / "adapter"
    losses = [s["loss"] for s in bench_report["runs"]["product-sft"][0]["steps"]]
    for k, batch in enumerate(batches):
        base, after = _base_and_adapter_losses(tiny_model, adapter, [sft[i] for i in batch], pad)
        if k == 0:
            assert abs(losses[0] - base) < 1e-5, (losses[0], base)  # step 1 ran on the base weights
            assert base - after > 1e-3, (base, after)  # four steps later, the first batch's loss is lower
        else:
            assert base - losses[k] > 3e-4, (k + 1, base, losses[k])  # steps 1..k already lowered it


def test_product_and_trl_dpo_learn_the_same_on_the_same_batches(bench_report, bench_batches):
    cmp = bench_report["loss_comparisons"]["product-dpo vs trl-dpo"]
    assert cmp["same_batches"] and cmp["steps"] == 3
    # The product's reference log-probabilities, computed once before training with the adapter disabled,
    # give the same losses as TRL's recomputation at every step.
    assert cmp["max_abs_diff"] < 1e-4, cmp
    assert abs(cmp["losses_a"][0] - 0.693147) < 1e-3  # log 2: policy == reference at step 1
    assert any(abs(x - 0.693147) > 1e-5 for x in cmp["losses_a"][1:])  # at learning rate 0 it stays log 2
    pairs, batches = bench_batches["pairs"], bench_batches["dpo_batches"][:3]
    for row in ("product-dpo", "trl-dpo"):
        steps = bench_report["runs"][row][0]["steps"]
        # The chosen sequences of a batch, then its rejected ones; tokens: both sequences of every pair.
        assert [s["batch"] for s in steps] == [
            _fingerprint([pairs[i][0] for i in b] + [pairs[i][1] for i in b]) for b in batches], row
        assert [s["tokens"] for s in steps] == [sum(len(pairs[i][0]) + len(pairs[i][1]) for i in b)
                                                for b in batches], row
    # The reference pass scored both sequences of every pair (the product reports all pairs' tokens).
    assert bench_report["runs"]["product-dpo"][0]["reference_tokens"] == sum(len(c) + len(r) for c, r, _ in pairs)


def test_benchmark_rows_report_what_the_table_needs(bench_report, tiny_model):
    """Each table figure is what its definition gives from the row's recorded steps (the first step left out
    as warm-up), with the parameter count taken from the model here."""
    import torch
    from transformers import AutoModelForCausalLM

    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).parameters())
    assert bench_report["params"] == params
    peak = bench_report["peak_gflops"]
    samples = sorted(f["peak"] for f in bench_report["matmul_gflops"])
    assert len(samples) == 5  # one before the rows, one after each of the four
    assert peak == samples[2]  # the median
    rows = {r["row"]: r for r in bench_report["rows"]}
    for name, n_steps in (("product-sft", 4), ("trl-sft-tuned", 4), ("product-dpo", 3), ("trl-dpo", 3)):
        r, run = rows[name], bench_report["runs"][name][0]
        steps = run["steps"]
        assert r["steps"] == len(steps) == n_steps
        assert all(s["seconds"] > 0 for s in steps)  # each step timed from its own start
        steady = steps[1:]
        seconds, tokens = sum(s["seconds"] for s in steady), sum(s["tokens"] for s in steady)
        assert r["tokens_per_step"] == pytest.approx(sum(s["tokens"] for s in steps) / n_steps, rel=1e-12)
        assert r["tokens_per_second"] == pytest.approx(tokens / seconds, rel=1e-12)
        assert r["seconds_per_step"] == pytest.approx(seconds / len(steady), rel=1e-12)
        assert r["first_step_seconds"] == steps[0]["seconds"]
        assert (r["loss_first"], r["loss_last"]) == (steps[0]["loss"], steps[-1]["loss"])
        assert r["share"] == pytest.approx(4 * params * r["tokens_per_second"] / 1e9 / peak, rel=1e-12)
        assert r["peak_rss_gib"] == run["peak_rss_bytes"] / 2**30 and run["peak_rss_bytes"] > 2**27  # torch alone
    dpo = rows["product-dpo"]
    run = bench_report["runs"]["product-dpo"][0]
    assert dpo["reference_seconds"] == run["reference_seconds"] > 0
    assert dpo["tokens_per_second_with_reference"] == pytest.approx(
        sum(s["tokens"] for s in run["steps"]) / (sum(s["seconds"] for s in run["steps"]) + run["reference_seconds"]),
        rel=1e-12)
