"""A job's dry run (``python -m services.trainer.worker --preflight DIR``): what it would do and cost, no training.

The same stages as a job, on the same ``job.json``: the data (``sources``), the encoding (the method's), the
step plan (``Schedule``) and the model (``modeling.load_model``). Then a few real training steps (forward,
backward, AdamW on the LoRA weights) on the run's first batches of epoch 1 (the first is the longest, so its
memory is the run's peak) are TIMED: the throughput of the estimate is measured here, on this machine, for this
model, method, quantization and batch. The first timed step counts as warm-up when more than one is timed. The
answer goes to ``DIR/preflight.json`` (``PreflightJobResponse``'s fields); the model is thrown away.

The memory estimate: the loaded model's weights as they sit in memory (the quantization actually used), the
LoRA weights' gradients and AdamW state (12 bytes per trainable parameter), the activations of the longest
batch (per token and layer: about 10 x hidden + 3 x intermediate values without gradient checkpointing, about
one hidden state per layer plus one layer's worth with it) and its logits (trained tokens x vocabulary, value
and gradient in fp32). The peak resident memory measured during the timed steps is reported beside it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

from services.trainer.worker import methods, sources
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError

RESULT_FILE = "preflight.json"
TIMED_STEPS = 3
GiB = 1024 ** 3


def _segments(tokenizer, ids: list[int], trained_from: int) -> list[dict]:
    """The example's tokens as runs of text: the prompt (not trained) and the response (trained)."""
    out = []
    for part, trained in ((ids[:trained_from], False), (ids[trained_from:], True)):
        if part:
            out.append({"text": tokenizer.decode(part, skip_special_tokens=False), "trained": trained,
                        "tokens": len(part)})
    return out


def _render(tokenizer, example) -> list[dict]:
    if hasattr(example, "prompt_len"):  # SFT
        return _segments(tokenizer, example.input_ids, example.prompt_len)
    (ids, n), _ = example.sequences()  # DPO: the prompt and the chosen answer
    return _segments(tokenizer, ids, n)


def _trained_tokens(example) -> int:
    if hasattr(example, "prompt_len"):
        return len(example.input_ids) - example.prompt_len
    return len(example.chosen) + len(example.rejected)


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 1024 ** 2:.1f} MiB"


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def run_preflight(job_dir: Path, events: EventSink) -> int:
    job = JobConfig.load(job_dir)
    spec = job.spec
    method_cls = methods.get(spec.method)
    records, source = sources.load_training_records(job, events, method_cls.records)

    from services.trainer.worker import modeling
    from services.trainer.worker.batching import Schedule, batch_order

    modeling.configure_threads(job.num_threads)
    tokenizer = modeling.load_tokenizer(job.model_path)
    encoded, stats = method_cls.encode(tokenizer, records, spec.max_seq_length)
    if not encoded:
        raise WorkerError(f"no training data left: every record's prompt fills max_seq_length "
                          f"{spec.max_seq_length}; raise training_config.max_seq_length")
    schedule = Schedule.for_spec(len(encoded), spec)
    lengths = [method_cls.example_length(e) for e in encoded]
    trained = [_trained_tokens(e) for e in encoded]

    # The batches the run will train on, in its order: their tokens are what the estimate is for.
    tokens_to_train, steps, epoch = 0, 0, 0
    while steps < schedule.total_steps:
        for batch in batch_order(lengths, spec.batch_size, spec.seed, epoch):
            if steps >= schedule.total_steps:
                break
            tokens_to_train += sum(lengths[i] for i in batch)
            steps += 1
        epoch += 1

    warnings: list[str] = []
    if stats.dropped:
        warnings.append(f"{len(stats.dropped)} of {len(records)} records are dropped: their prompt alone fills "
                        f"max_seq_length {spec.max_seq_length}")
    if stats.truncated:
        warnings.append(f"{stats.truncated} of {len(encoded)} examples are longer than max_seq_length "
                        f"{spec.max_seq_length} and will be cut (their end is not trained)")
    if len(encoded) < spec.batch_size:
        warnings.append(f"only {len(encoded)} examples for batch_size {spec.batch_size}: every step is the same "
                        f"partial batch of {len(encoded)}; lower batch_size or add data")
    elif schedule.steps_per_epoch < 4:
        warnings.append(f"{len(encoded)} examples make only {schedule.steps_per_epoch} steps per epoch at "
                        f"batch_size {spec.batch_size}")

    # -- the model, and a few timed training steps ------------------------------------------------------------
    import psutil
    import torch

    loaded = modeling.load_model(job.model_path, spec, tokenizer, events)
    if loaded.quantization != spec.quantization:
        warnings.append(f"{spec.quantization} quantization is unavailable here: the job would train in full "
                        "precision (see the worker log)")
    model = loaded.model
    method = method_cls.create(encoded, tokenizer.pad_token_id, loaded.device, spec)
    timed = batch_order(lengths, spec.batch_size, spec.seed, 0)[:TIMED_STEPS]
    timed_indices = sorted({i for b in timed for i in b})
    t0 = time.perf_counter()
    # Only the timed examples are prepared (DPO: their reference log-probabilities).
    method.prepare(model, events, SimpleNamespace(used_indices=lambda _lengths: timed_indices))
    prepare_per_example = (time.perf_counter() - t0) / max(1, len(timed_indices))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate)
    causal_lm = model.get_base_model()
    model.train()
    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(loaded.device)
    times, tokens = [], []
    for batch in timed:
        t = time.perf_counter()
        out = method.step(causal_lm, batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize(loaded.device)
        times.append(time.perf_counter() - t)
        tokens.append(out.tokens)
    counted = slice(1, None) if len(times) > 1 else slice(None)
    tps = sum(tokens[counted]) / max(sum(times[counted]), 1e-9)
    used = len(schedule.used_indices(lengths))
    estimated = tokens_to_train / tps + prepare_per_example * used * (prepare_per_example > 0.001)
    throughput_source = (f"timed {len(times)} training steps (forward, backward, AdamW) of this job's first batches "
                         f"in this preflight on {loaded.device}"
                         + (", the first excluded as warm-up" if len(times) > 1 else ""))
    measured_peak = (torch.cuda.max_memory_allocated(loaded.device) if loaded.device.type == "cuda"
                     else _peak_rss())

    # -- the memory estimate ----------------------------------------------------------------------------------
    config = causal_lm.config
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    inter = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    act_bytes = torch.tensor([], dtype=loaded.dtype).element_size()
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())
    lora_state = loaded.trainable_parameters * 12
    first = timed[0] if timed else []
    batch_tokens = len(first) * max((lengths[i] for i in first), default=0)
    per_token = (hidden * (layers + 1) + 10 * hidden + 3 * inter if spec.gradient_checkpointing
                 else layers * (10 * hidden + 3 * inter))
    activations = batch_tokens * per_token * act_bytes
    logits = sum(trained[i] for i in first) * vocab * 4 * 2
    estimate = weights + lora_state + activations + logits
    breakdown = (f"weights {_gib(weights)} ({loaded.quantization}) + LoRA gradients and AdamW state "
                 f"{_gib(lora_state)} + activations of the longest batch {_gib(activations)} "
                 f"({len(first)} x {max((lengths[i] for i in first), default=0)} tokens, gradient checkpointing "
                 f"{'on' if spec.gradient_checkpointing else 'off'}) + logits {_gib(logits)}")

    # -- advice -----------------------------------------------------------------------------------------------
    if loaded.device.type == "cpu" and spec.quantization in ("4bit", "8bit"):
        full = loaded.total_parameters * 4
        available = psutil.virtual_memory().available
        if full + lora_state + activations + logits < 0.5 * available:
            warnings.append(f"{spec.quantization} quantization on a CPU saves no time: the quantized weights are "
                            f"dequantized to compute, and {job.base_model} fits in full "
                            f"precision here ({_gib(full)} of weights, {_gib(available)} free): consider "
                            "quantization none")
    if spec.gradient_checkpointing:
        warnings.append("gradient checkpointing recomputes every layer in the backward pass: turn it off where "
                        f"memory allows (estimated {_gib(estimate)} with it)")

    result = {
        "records": len(records), "examples": len(encoded), "dropped": len(stats.dropped),
        "truncated": stats.truncated, "tokens_per_epoch": sum(lengths), "trained_tokens_per_epoch": sum(trained),
        "longest_example": max(lengths), "steps_per_epoch": schedule.steps_per_epoch,
        "total_steps": schedule.total_steps, "tokens_to_train": tokens_to_train,
        "tokens_per_second": round(tps, 2), "throughput_source": throughput_source,
        "estimated_seconds": round(estimated, 2), "estimated_memory_bytes": int(estimate),
        "memory_breakdown": breakdown, "measured_peak_memory_bytes": int(measured_peak),
        "device": str(loaded.device), "example": _render(tokenizer, encoded[0]), "warnings": warnings,
        "source": source,
    }
    tmp = job.job_dir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, job.job_dir / RESULT_FILE)
    events.log(f"preflight done: {len(encoded)} examples, {schedule.total_steps} steps, ~{estimated:.0f} s")
    return 0
