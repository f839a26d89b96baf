"""Training speed: the product's trainer vs TRL on the same machine, the same data and the same settings.

One command, one run, every row on the same records::

    .venv/bin/python benchmarks/train_bench.py                      # CPU: SFT, DPO and progress-reporting rows
    python3 benchmarks/train_bench.py --device cuda --random-init   # a GPU machine without the weights

Rows (each in its own subprocess, so its peak RSS is its own):

- ``product-sft``: the worker's own code path in-process (``services.trainer.worker.runner.run_job`` on a job
  folder, the same function ``python -m services.trainer.worker`` runs), SFT with response-only loss.
- ``trl-sft-tuned``: TRL ``SFTTrainer`` tuned for the machine: fp32 on CPU (bf16 on CUDA), no gradient
  checkpointing, the same tokens, the same batches in the same order, the same LoRA init, LR schedule and
  optimizer settings, so its per-step losses can be compared with the product's.
- ``trl-sft-defaults``: ``SFTTrainer`` with its defaults (bf16, gradient checkpointing, its own tokenisation and
  shuffling), only the task's parameters set; ``--trl-default-steps`` steps (3) because it is slow on CPU.
- ``product-dpo`` / ``trl-dpo``: DPO on preference pairs; the product computes the reference log-probabilities
  once per pair (adapter disabled) before training and runs the prompt once per pair (chosen and rejected share
  it in one packed row), TRL's ``DPOTrainer`` recomputes the reference every step and runs the prompt twice.
- on CUDA also ``product-sft-4bit`` / ``trl-sft-4bit``: QLoRA (bitsandbytes NF4) of both.
- ``events``: progress reporting with 20 watchers: a real trainer gRPC service running a real (tiny-model) job
  with 20 ``WatchJob`` streams attached vs none; the CPU the service and watchers spend per step event, as a
  share of the product's SFT step time measured above.

For every training row: trained (non-padding) tokens/s and s/step over the steps after the first (warm-up),
peak RSS, loss first -> last, and 4 x parameters x tokens/s as a share of the machine's matmul throughput
(fp32 GEMMs with the same thread count on CPU, bf16 on CUDA) measured around the rows in the same run.
``--repeats N`` runs the product and tuned-TRL rows N times, interleaved, and reports medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.trainer.models import DEFAULT_MODEL_ID as DEFAULT_MODEL  # noqa: E402  (after the path)

RESULT_PREFIX = "BENCH-RESULT "
DROPOUT_SEED = 7919  # per-step reseeding: each row's LoRA-dropout masks reproducible (see _step_seed)


def _step_seed(seed: int, step: int) -> int:
    """The RNG seed set right before optimizer step ``step`` (1-based) in every SFT row.

    Each row's LoRA-dropout masks are then the same from run to run and across its ablations (the product's
    ``product-sft-peft-lora`` row and TRL draw peft's masks; the product's fused LoRA step draws its own from raw
    bits, ``worker/fused_lora.py``, so its per-step losses differ from TRL's by dropout noise; with
    ``--lora-dropout 0`` they agree to rounding). Reseeding costs microseconds and changes no other behaviour.
    """
    return seed * DROPOUT_SEED + step


def _batch_hash(rows: list[list[int]]) -> str:
    """A short fingerprint of a batch's token sequences, in batch order (to check both trainers saw the same)."""
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------------------------
# Data and model preparation (parent process)
# ---------------------------------------------------------------------------------------------------------------

def export_samples(out_dir: Path, sft_n: int, dpo_n: int) -> tuple[Path, Path]:
    """The sample debates through an in-process exporter (real store on SQLite, real import and export code):
    the first ``sft_n`` SFT records and ``dpo_n`` DPO pairs of the train split, as JSONL files."""
    from tests.support.sample_exports import sample_records

    out_dir.mkdir(parents=True, exist_ok=True)
    sft, dpo = sample_records(("sft", {"limit": sft_n, "split": "train"}), ("dpo", {"limit": dpo_n, "split": "train"}))
    sft_path, dpo_path = out_dir / "sft.jsonl", out_dir / "dpo.jsonl"
    sft_path.write_text("".join(json.dumps(r) + "\n" for r in sft), encoding="utf-8")
    dpo_path.write_text("".join(json.dumps(r) + "\n" for r in dpo), encoding="utf-8")
    return sft_path, dpo_path


DATASETS = ("sample", "distinct", "long")
"""SFT data of the rows: ``sample`` (the sample export: every record shares the chat header AND the debate
instruction, ~61 tokens), ``distinct`` (the same questions and answers with the instruction left out: nothing
shared beyond the chat header), ``long`` (distinct instructions, answers of 300-600 tokens, several consensus
answers of the samples joined)."""
LONG_MAX_SEQ_LENGTH = 768


def derived_datasets(out_dir: Path, model_path: Path, seed: int = 0) -> None:
    """``sft-distinct.jsonl`` and ``sft-long.jsonl`` from ``sft.jsonl`` (see ``DATASETS``)."""
    import random

    from transformers import AutoTokenizer

    records = [json.loads(x) for x in (out_dir / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    distinct = [dict(r, instruction=r["input"] or r["instruction"], input="") for r in records]
    tok = AutoTokenizer.from_pretrained(model_path)
    rng = random.Random(seed)
    long = []
    for i, r in enumerate(distinct):
        target = rng.randint(300, 600)
        parts, n, k = [], 0, i
        while n < target:
            text = records[k % len(records)]["output"]
            ids = tok(text, add_special_tokens=False)["input_ids"]
            take = ids[:target - n]
            parts.append(tok.decode(take))
            n += len(take)
            k += 1
        long.append(dict(r, output="\n\n".join(parts)))
    for name, rows in (("sft-distinct.jsonl", distinct), ("sft-long.jsonl", long)):
        (out_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


ARCHITECTURES = {
    # SmolLM2-1.7B's published shape (the same tokenizer and vocabulary as the 135M): 1.71 B parameters.
    "smollm2-1.7b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                     "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 64, "rope_theta": 130000,
                     "max_position_embeddings": 8192, "tie_word_embeddings": True},
}
"""``--architecture``: config values laid over the model folder's ``config.json`` for a random-init model of
another size (``--random-init``), so a GPU run measures a larger model without its weights."""


def copy_model_files(source: Path, target: Path, skip: tuple[str, ...] = ()) -> None:
    """A model folder's files without its weights (config, tokenizer, chat template), except ``skip``."""
    for f in source.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".gguf")) and f.name not in skip:
            shutil.copy2(f, target / f.name)


def random_init_model(source: Path, target: Path, seed: int, overrides: dict | None = None,
                      dtype: str = "float32") -> Path:
    """A model folder with the architecture of ``source/config.json`` (``overrides`` laid over it), seeded random
    weights saved in ``dtype``, and ``source``'s tokenizer files (for machines the weights cannot be carried to).
    Every row loads this same folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = AutoConfig.from_pretrained(source)
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(tmp)
    copy_model_files(source, tmp, skip=("config.json",))
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------------------------------------------
# Machine throughput
# ---------------------------------------------------------------------------------------------------------------

def matmul_tflops(device: str, threads: int) -> dict:
    """The machine's dense matmul throughput now: fp32 with ``threads`` threads on CPU (a square 2048 GEMM and a
    step-shaped one, 1024 tokens x 576 -> 1536, by torch's ``@`` and by oneDNN where the worker uses it), bf16
    4096^3 on CUDA. GFLOP/s of each; ``peak`` is the best."""
    import torch

    out = {}
    if device == "cuda":
        shapes, dtype = {"4096^3 bf16": (4096, 4096, 4096)}, torch.bfloat16
    else:
        torch.set_num_threads(threads)
        shapes, dtype = {"2048^3 fp32": (2048, 2048, 2048), "1024x576x1536 fp32": (1024, 576, 1536)}, torch.float32
    kernels = {"": lambda a, b: a @ b}
    if device == "cpu":
        from services.trainer.worker import cpu_linear

        if cpu_linear.backend()[0] == "onednn":  # the product's frozen layers compute by oneDNN: its rate counts
            kernels[" oneDNN"] = lambda a, b: cpu_linear.onednn(a, b.t())  # a @ b
    for label, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        for suffix, mm in kernels.items():
            for _ in range(3):
                mm(a, b)
            reps, elapsed = 0, 0.0
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            sync()
            t0 = time.perf_counter()
            while elapsed < (0.5 if device == "cuda" else 1.5):
                for _ in range(10 if device == "cuda" else 2):
                    mm(a, b)
                    reps += 1
                sync()
                elapsed = time.perf_counter() - t0
            out[label + suffix] = 2 * m * k * n * reps / elapsed / 1e9
    out["peak"] = max(out.values())
    return out


# ---------------------------------------------------------------------------------------------------------------
# Rows (each runs in its own subprocess: ``train_bench.py --row NAME --config FILE``)
# ---------------------------------------------------------------------------------------------------------------

def _torch_setup(cfg: dict):
    import torch

    if cfg["device"] == "cpu":
        torch.set_num_threads(cfg["threads"])
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    return torch


def _training_config(cfg: dict, method: str, quantization: str, dataset: str, steps: int) -> dict:
    """The job's training_config, validated by the product's own spec (defaults filled in)."""
    from services.trainer.spec import TrainingSpec

    raw = dict(method=method, dataset_path=dataset, quantization=quantization, batch_size=cfg["batch_size"],
               max_seq_length=cfg["max_seq_length"], max_steps=steps, num_epochs=1000, lora_r=cfg["lora_r"],
               lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"] if method == "sft" else 0.0,
               target_modules=cfg["target_modules"], learning_rate=cfg["learning_rate"],
               gradient_checkpointing=False, seed=cfg["seed"])
    return TrainingSpec.model_validate(raw).model_dump(mode="json")


def row_product(cfg: dict, name: str, method: str, quantization: str) -> dict:
    """The worker's code path (``run_job``) on a job folder, events recorded with their times."""
    os.environ["TRAINER_EVAL_ENABLED"] = "false"  # held-out evaluation runs after training; not timed here
    # torch is NOT imported before run_job: the worker configures threads (and OpenMP) itself when it loads torch.
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.methods.dpo import DPOMethod
    from services.trainer.worker.methods.sft import SFTMethod
    from services.trainer.worker.runner import run_job
    from services.trainer.worker.signals import StopGuard

    work = Path(cfg["work"])
    job_dir = work / f"job-{name}"
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    steps = cfg["steps"] if method == "sft" else cfg["dpo_steps"]
    dataset = cfg.get("sft_file", "sft.jsonl") if method == "sft" else "dpo.jsonl"
    (job_dir / "job.json").write_text(json.dumps({
        "job_id": f"bench-{name}", "name": name, "vertical": "", "base_model": cfg["model_id"],
        "model_path": cfg["model_path"], "training_config": _training_config(cfg, method, quantization, dataset, steps),
        "data_root": str(work / "data"), "checkpoint_every_steps": 10**9,
        "num_threads": cfg["threads"] if cfg["device"] == "cpu" else None}))

    record: dict = {"steps": [], "reference_seconds": None, "reference_tokens": 0}
    calls = {"n": 0}
    originals = {}
    from services.trainer.worker import logprobs
    from services.trainer.worker.loop import TrainLoop

    # Ablation rows: one lever off.
    if "no-prefix" in name:
        logprobs.MIN_SHARED_PREFIX = 10**9  # every row runs its whole sequence
    if "plain-loss" in name:  # the head's log-probabilities through batch-wide logits, not chunked
        logprobs._frozen_plain_head = lambda causal_lm: None
    if "no-packing" in name:
        logprobs.packing_plan = lambda causal_lm: ("separate", "ablation row")  # the prompt twice per pair

    class Recorder(EventSink):
        """The worker's event sink (JSON lines, flushed) writing to /dev/null, with each event's time kept."""

        def __init__(self) -> None:
            super().__init__(open(os.devnull, "w", buffering=1, encoding="utf-8"))
            self.events: list[tuple[float, dict]] = []

        def emit(self, type: str, message: str = "", **fields) -> None:
            if type == "status" and fields.get("status") == "training" and cfg["device"] == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats()  # the training's peak, like the TRL rows (load excluded)
            super().emit(type, message, **fields)
            self.events.append((time.perf_counter(), {"type": type, "message": message, **fields}))

    def wrap(cls, fingerprint):
        original = originals[cls] = cls.step

        def step(self, model, indices):
            import torch

            calls["n"] += 1
            if method == "sft":
                torch.manual_seed(_step_seed(cfg["seed"], calls["n"]))
            out = original(self, model, indices)
            entry = {"tokens": out.tokens, "batch": fingerprint(self, indices), "trained": out.trained_tokens}
            if method == "sft":  # the tokens of the batch's shared prefix (run once instead of once per row)
                entry["prefix_tokens"] = logprobs.batch_prefix_len([self.examples[i] for i in indices]) * len(indices)
            record["steps"].append(entry)
            return out

        cls.step = step

    loop_step = TrainLoop._step

    def counted_step(self, epoch, group):
        loop_step(self, epoch, group)
        if self.state["step"] == self.total_steps:
            # The work actually done, counted on the last batch again after the timed steps (not timed).
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                out = originals[type(self.method)](self.method, self.causal_lm, group[0])
                out.loss.backward()
            self.optimizer.zero_grad(set_to_none=True)
            record["flops"] = {"flops": counter.get_total_flops(), "tokens": out.tokens}

    TrainLoop._step = counted_step
    _count_onednn_flops()

    wrap(SFTMethod, lambda self, ix: _batch_hash([self.examples[i].input_ids for i in ix]))
    # DPO batches: the chosen sequences of the pairs, then their rejected ones (TRL's layout too).
    wrap(DPOMethod, lambda self, ix: _batch_hash(
        [self.pairs[i].sequences()[0][0] for i in ix] + [self.pairs[i].sequences()[1][0] for i in ix]))
    reference = DPOMethod.compute_reference

    def timed_reference(self, *args, **kwargs):
        t0 = time.perf_counter()
        reference(self, *args, **kwargs)
        record["reference_seconds"] = time.perf_counter() - t0
        record["reference_tokens"] = sum(len(s) for p in self.pairs for s, _ in p.sequences())

    DPOMethod.compute_reference = timed_reference

    sink = Recorder()
    rc = run_job(job_dir, sink, StopGuard())
    import torch

    if rc != 0:
        raise RuntimeError(f"run_job returned {rc}")
    times = [t for t, e in sink.events if e["type"] == "step"]
    losses = [e["loss"] for _, e in sink.events if e["type"] == "step"]
    start = next(t for t, e in sink.events if e["type"] == "status" and e.get("status") == "training")
    metrics = json.loads((job_dir / "metrics.json").read_text())
    for i, (t, loss) in enumerate(zip(times, losses)):
        record["steps"][i].update(seconds=t - (times[i - 1] if i else start), loss=loss)
    record.update(quantization=metrics["quantization"], dtype=metrics["dtype"], device=metrics["device"],
                  threads=metrics.get("threads"))
    if cfg["device"] == "cuda":
        record["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)
    return record


def _count_onednn_flops() -> None:
    """``FlopCounterMode`` counts oneDNN's linear (``worker/cpu_linear.py``) like ``mm``: 2 x rows x in x out."""
    import torch
    from torch.utils.flop_counter import register_flop_formula

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:
        return

    @register_flop_formula(op)
    def linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        rows = 1
        for d in x_shape[:-1]:
            rows *= d
        return 2 * rows * x_shape[-1] * w_shape[0]


def _recording(trainer_cls, record: dict, sampler, pretokenised: bool = False):
    """``trainer_cls`` (a TRL trainer) recording each step's tokens, batch fingerprint and loss in ``record``,
    drawing batches from ``sampler`` (its own order when None); ``pretokenised``: the dataset is already
    tokenised exactly as the product tokenises it, so TRL's preparation is skipped."""

    class Recording(trainer_cls):
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset if pretokenised else super()._prepare_dataset(dataset, *args, **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mask = inputs["attention_mask"]
            rows = [ids[m.bool()].tolist() for ids, m in zip(inputs["input_ids"], mask)]
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            value = loss[0] if isinstance(loss, tuple) else loss
            record["steps"].append({"tokens": int(mask.sum()), "batch": _batch_hash(rows),
                                    "loss": float(value.detach())})
            return loss

    return Recording


def _count_trl_flops(trainer, record: dict) -> None:
    """The work of one training step of ``trainer`` (its first batch, loss and backward), counted after the timed
    run with ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    steps = len(record["steps"])
    trainer.model.train()
    with FlopCounterMode(display=False) as counter:
        loss = trainer.compute_loss(trainer.model, batch)
        (loss[0] if isinstance(loss, tuple) else loss).backward()
    trainer.model.zero_grad(set_to_none=True)
    tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else record["steps"][0]["tokens"]
    if "chosen_input_ids" in batch or "prompt_input_ids" in batch:
        tokens = record["steps"][-1]["tokens"]  # (DPO: the pairs' chosen and rejected sequences)
    del record["steps"][steps:]  # compute_loss recorded the extra call
    record["flops"] = {"flops": counter.get_total_flops(), "tokens": tokens}


def _train_timed(torch, cfg: dict, trainer, clock, record: dict) -> None:
    """Runs a TRL trainer; fills each recorded step's seconds (from ``clock``), the compute dtype and device, and
    on CUDA the peak GPU memory of the run."""
    if cfg["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    for i, end in enumerate(clock.ends):
        record["steps"][i]["seconds"] = end - (clock.ends[i - 1] if i else clock.start)
    p = next(trainer.model.parameters())
    record.update(dtype=str(p.dtype).removeprefix("torch."), device=str(p.device))
    if cfg["device"] == "cuda":
        record["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()


class ProductOrderSampler:
    """The product's batch order (``batching.batch_order``), epoch by epoch, as a flat index sampler: TRL's
    DataLoader cuts it into the same batches of ``batch_size``."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        from services.trainer.worker.batching import batch_order

        return iter([i for b in batch_order(self.lengths, self.batch_size, self.seed, self.epoch) for i in b])

    def __len__(self) -> int:
        return len(self.lengths)


def _trl_recorder(torch, cfg: dict, reseed: bool):
    """A TrainerCallback timing each optimizer step (and reseeding before it, like the product row)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.start = None
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            if reseed:
                torch.manual_seed(_step_seed(cfg["seed"], state.global_step + 1))

        def on_step_end(self, args, state, control, **kw):
            if cfg["device"] == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    return StepClock()


def _load_trl_model(torch, cfg: dict, quantization: str):
    """The base model with the product's LoRA config and seeded init (so both trainers start from one adapter)."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from services.trainer.spec import TrainingSpec
    from services.trainer.worker.modeling import _bnb_config

    cuda = cfg["device"] == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    kwargs = {"dtype": dtype}
    if quantization == "4bit":
        kwargs["quantization_config"] = _bnb_config("4bit", dtype)  # the product's NF4 settings
        kwargs["device_map"] = {"": 0 if cuda else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(cfg["model_path"], **kwargs)
    if quantization != "4bit" and cuda:
        model = model.to("cuda")
    model.config.use_cache = False
    if quantization == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    spec = TrainingSpec.model_validate(_training_config(cfg, "sft", quantization, "sft.jsonl", cfg["steps"]))
    torch.manual_seed(cfg["seed"])
    return get_peft_model(model, spec.to_lora_config())


def _common_trl_args(cfg: dict, name: str, steps: int) -> dict:
    cuda = cfg["device"] == "cuda"
    return dict(output_dir=str(Path(cfg["work"]) / f"trl-{name}"), per_device_train_batch_size=cfg["batch_size"],
                max_steps=steps, learning_rate=cfg["learning_rate"], lr_scheduler_type="linear", warmup_steps=0,
                weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False, bf16=cuda, fp16=False,
                use_cpu=not cuda, logging_steps=1, save_strategy="no", report_to="none", seed=cfg["seed"],
                optim="adamw_torch", dataloader_pin_memory=False, disable_tqdm=True,
                max_length=cfg["max_seq_length"])


def row_trl_sft(cfg: dict, name: str, quantization: str, defaults: bool) -> dict:
    """TRL's SFTTrainer: tuned (the product's tokens, batches, init and schedule; fp32 CPU / bf16 CUDA, no
    gradient checkpointing) or with its defaults (its own tokenisation, order, dtype and checkpointing)."""
    torch = _torch_setup(cfg)
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from services.trainer.worker.encoding import encode_records, user_message
    from services.trainer.worker.modeling import load_tokenizer
    from services.trainer.worker.sources import SFT_RECORDS, read_jsonl

    sft_file = cfg.get("sft_file", "sft.jsonl")
    records = read_jsonl(Path(cfg["work"]) / "data" / sft_file, SFT_RECORDS, sft_file)
    tokenizer = load_tokenizer(Path(cfg["model_path"]))
    record: dict = {"steps": []}
    clock = _trl_recorder(torch, cfg, reseed=not defaults)

    if defaults:
        steps = cfg["trl_default_steps"]
        dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": user_message(r)}],
                                      "completion": [{"role": "assistant", "content": r["output"]}]}
                                     for r in records])
        args = SFTConfig(output_dir=str(Path(cfg["work"]) / f"trl-{name}"),
                         per_device_train_batch_size=cfg["batch_size"],
                         max_steps=steps, learning_rate=cfg["learning_rate"], max_length=cfg["max_seq_length"],
                         report_to="none", disable_tqdm=True, use_cpu=cfg["device"] != "cuda")
        model = cfg["model_path"]
        peft_config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                                 target_modules=cfg["target_modules"], task_type="CAUSAL_LM")
        sampler = None
    else:
        steps = cfg["steps"]
        encoded, stats = encode_records(tokenizer, records, cfg["max_seq_length"])
        if stats.dropped:
            raise RuntimeError("records dropped by encoding: the rows would not see the same data")
        dataset = Dataset.from_dict({
            "input_ids": [e.input_ids for e in encoded],
            "completion_mask": [[0] * e.prompt_len + [1] * (len(e.input_ids) - e.prompt_len) for e in encoded]})
        kernels = {}
        if name == "trl-sft-liger":
            try:  # Liger's Triton kernels (RMSNorm, SwiGLU, RoPE) patched into the model by the Trainer
                import liger_kernel  # noqa: F401
            except ImportError as exc:
                raise RuntimeError(f"liger-kernel is not installed here ({exc})") from None
            kernels["use_liger_kernel"] = True
        args = SFTConfig(**_common_trl_args(cfg, name, steps), completion_only_loss=True, **kernels)
        model = _load_trl_model(torch, cfg, quantization)
        peft_config = None
        sampler = ProductOrderSampler([len(e.input_ids) for e in encoded], cfg["batch_size"], cfg["seed"])

    Timed = _recording(SFTTrainer, record, sampler)
    trainer = Timed(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                    peft_config=peft_config, callbacks=[clock])
    _train_timed(torch, cfg, trainer, clock, record)
    _count_trl_flops(trainer, record)
    record.update(quantization=quantization, bf16=bool(trainer.args.bf16),
                  gradient_checkpointing=bool(trainer.args.gradient_checkpointing))
    return record


def row_trl_dpo(cfg: dict, name: str) -> dict:
    """TRL's DPOTrainer on the same pairs (the product's tokens), batches and init; fp32 CPU / bf16 CUDA, no
    gradient checkpointing; the reference is the model with the adapter disabled, recomputed every step."""
    torch = _torch_setup(cfg)
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from services.trainer.worker.encoding import encode_pairs
    from services.trainer.worker.modeling import load_tokenizer
    from services.trainer.worker.sources import DPO_PAIRS, read_jsonl

    records = read_jsonl(Path(cfg["work"]) / "data" / "dpo.jsonl", DPO_PAIRS, "dpo.jsonl")
    tokenizer = load_tokenizer(Path(cfg["model_path"]))
    pairs, stats = encode_pairs(tokenizer, records, cfg["max_seq_length"])
    if stats.dropped:
        raise RuntimeError("pairs dropped by encoding: the rows would not see the same data")
    dataset = Dataset.from_dict({"prompt_ids": [p.prompt for p in pairs], "chosen_ids": [p.chosen for p in pairs],
                                 "rejected_ids": [p.rejected for p in pairs]})
    sampler = ProductOrderSampler([p.length for p in pairs], cfg["batch_size"], cfg["seed"])
    record: dict = {"steps": []}
    clock = _trl_recorder(torch, cfg, reseed=False)
    dpo_cfg = dict(cfg, lora_dropout=0.0)
    model = _load_trl_model(torch, dpo_cfg, "none")

    Timed = _recording(DPOTrainer, record, sampler, pretokenised=True)
    precompute = name.endswith("-precompute")
    args = DPOConfig(**_common_trl_args(dpo_cfg, name, cfg["dpo_steps"]), beta=cfg["beta"],
                     precompute_ref_log_probs=precompute)
    t0 = time.perf_counter()  # with precompute_ref_log_probs, the constructor runs the reference pass
    trainer = Timed(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    if precompute:
        record["reference_seconds"] = time.perf_counter() - t0
        record["reference_tokens"] = sum(len(p.prompt) * 2 + len(p.chosen) + len(p.rejected) for p in pairs)
    _train_timed(torch, cfg, trainer, clock, record)
    _count_trl_flops(trainer, record)
    record.update(quantization="none")
    return record


def row_events(cfg: dict, watchers_list: list[int]) -> dict:
    """Progress reporting: a real trainer gRPC service (in this process) runs a real job on a tiny model (many
    short steps, so many step events) while ``n`` WatchJob streams (in this process too) follow it. The CPU
    time of this process (service + watchers, all threads) per step event, for each ``n``; plus the worker's own
    cost of writing one step event."""
    import asyncio

    import grpc

    from aragora.training.v1 import trainer_pb2 as pb
    from aragora.training.v1 import trainer_pb2_grpc
    from services.trainer import server as trainer_server
    from services.trainer.config import TrainerSettings
    from tests.support.tiny_model import TINY_MODEL_ID, build_tiny_model

    os.environ["TRAINER_EVAL_ENABLED"] = "false"  # the workers inherit it: no held-out evaluation after training
    work = Path(cfg["work"]) / "events"
    shutil.rmtree(work, ignore_errors=True)
    models_dir, data_root = work / "models", work / "data"
    build_tiny_model(models_dir)
    data_root.mkdir(parents=True)
    records = [json.loads(x) for x in (Path(cfg["work"]) / "data" / "sft.jsonl").read_text().splitlines()]
    (data_root / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    steps = cfg["event_steps"]

    async def one(n_watchers: int, index: int) -> dict:
        settings = TrainerSettings(database_url=f"sqlite:///{work}/jobs-{index}.db", jobs_dir=work / f"jobs-{index}",
                                   models_dir=models_dir, data_root=data_root, exporter_address="127.0.0.1:1",
                                   grace_seconds=0.5, _env_file=None)
        running = await trainer_server.start(settings, port=0)
        channel = grpc.aio.insecure_channel(running.address)
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        try:
            config = pb.TrainingConfig(dataset_path="sft.jsonl", max_steps=steps, num_epochs=1000, batch_size=1,
                                       max_seq_length=256, quantization=pb.QUANTIZATION_NONE,
                                       gradient_checkpointing=False, checkpoint_every_steps=10**6)
            job = (await stub.CreateJob(pb.CreateJobRequest(name=f"events-{index}", base_model=TINY_MODEL_ID,
                                                            training_config=config), timeout=30)).job
            counts = [0] * n_watchers
            first_step: dict = {}
            last_step: dict = {}

            async def watch(i: int) -> None:
                async for msg in stub.WatchJob(pb.WatchJobRequest(job_id=job.id)):
                    if msg.WhichOneof("item") == "event":
                        counts[i] += 1

            async def main_watch() -> None:
                # The measuring watcher (not counted among the n): marks the first and last step event.
                async for msg in stub.WatchJob(pb.WatchJobRequest(job_id=job.id)):
                    if msg.WhichOneof("item") != "event":
                        continue
                    if msg.event.type == pb.EVENT_TYPE_STEP:
                        now = (time.process_time(), time.perf_counter())
                        first_step.setdefault("t", now)
                        last_step["t"] = now
                        last_step["n"] = last_step.get("n", 0) + 1

            tasks = [asyncio.create_task(watch(i)) for i in range(n_watchers)]
            marker = asyncio.create_task(main_watch())
            await asyncio.sleep(0.5)
            await stub.StartJob(pb.StartJobRequest(job_id=job.id), timeout=30)
            await asyncio.wait_for(marker, timeout=600)
            await asyncio.gather(*tasks)
            final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id), timeout=30)).job
            n_events = last_step["n"] - 1  # intervals between the first and the last step event
            cpu = last_step["t"][0] - first_step["t"][0]
            wall = last_step["t"][1] - first_step["t"][1]
            return {"watchers": n_watchers, "status": pb.JobStatus.Name(final.status), "step_events": last_step["n"],
                    "events_per_watcher": counts[0] if counts else None, "cpu_seconds": cpu, "wall_seconds": wall,
                    "cpu_ms_per_step_event": 1000 * cpu / n_events, "worker_step_ms": 1000 * wall / n_events}
        finally:
            await channel.close()
            await running.stop(0.5)

    results = []
    for index, n in enumerate(watchers_list):
        results.append(asyncio.run(one(n, index)))

    # The worker side: one step event written by the worker's EventSink to a pipe read by another thread.
    import threading

    from services.trainer.worker.events import EventSink

    r, w = os.pipe()
    reader = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(r, 65536), b"")], daemon=True)
    reader.start()
    sink = EventSink(os.fdopen(w, "w", buffering=1, encoding="utf-8"))
    saved_stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # the worker copies every event to worker.log (its stderr)
    try:
        n = 2000
        t0 = time.perf_counter()
        for i in range(n):
            sink.emit("step", f"epoch 1/3 step {i}/2000 loss 1.2345 lr 2.00e-04 150 tok/s", epoch=0.5, step=i,
                      total_steps=n, loss=1.2345, learning_rate=2e-4, examples_seen=4 * i, tokens_per_second=150.0,
                      progress=i / n, extra={})
        emit_us = (time.perf_counter() - t0) / n * 1e6
    finally:
        sys.stderr.close()
        sys.stderr = saved_stderr
    return {"runs": results, "worker_emit_us": emit_us, "tiny_steps": steps}


ROWS = ("product-sft", "trl-sft-tuned", "trl-sft-tuned-passive", "trl-sft-liger", "product-sft-4bit", "trl-sft-4bit",
        "trl-sft-defaults", "product-dpo", "trl-dpo", "trl-dpo-precompute", "events", "product-sft-no-prefix",
        "product-dpo-no-packing", "product-dpo-no-prefix", "product-sft-passive", "product-sft-no-onednn",
        "product-sft-plain-loss", "product-sft-peft-lora", "product-dpo-plain-loss")
PAIRED_ROWS = ("product-sft", "trl-sft-tuned", "trl-sft-tuned-passive", "trl-sft-liger", "product-sft-4bit",
               "trl-sft-4bit", "product-dpo", "trl-dpo-precompute", "product-sft-no-prefix", "product-sft-passive",
               "product-sft-no-onednn", "product-sft-plain-loss", "product-sft-peft-lora", "product-dpo-plain-loss")
"""Rows repeated ``--repeats`` times, interleaved. An SFT row name may end in ``@DATASET`` (``DATASETS``)."""


def run_row(full_name: str, config_path: Path) -> None:
    cfg = json.loads(config_path.read_text())
    t0 = time.perf_counter()
    name, _, dataset = full_name.partition("@")
    if dataset and dataset != "sample":
        cfg = dict(cfg, sft_file=f"sft-{dataset}.jsonl",
                   max_seq_length=max(cfg["max_seq_length"], LONG_MAX_SEQ_LENGTH) if dataset == "long"
                   else cfg["max_seq_length"])
    if name in ("product-sft", "product-sft-no-prefix", "product-sft-passive", "product-sft-no-onednn",
                "product-sft-plain-loss", "product-sft-peft-lora"):
        out = row_product(cfg, full_name, "sft", "none")
    elif name == "product-sft-4bit":
        out = row_product(cfg, name, "sft", "4bit")
    elif name in ("product-dpo", "product-dpo-no-packing", "product-dpo-no-prefix", "product-dpo-plain-loss"):
        out = row_product(cfg, name, "dpo", "none")
    elif name in ("trl-sft-tuned", "trl-sft-tuned-passive", "trl-sft-liger"):
        out = row_trl_sft(cfg, name, "none", defaults=False)
    elif name == "trl-sft-4bit":
        out = row_trl_sft(cfg, name, "4bit", defaults=False)
    elif name == "trl-sft-defaults":
        out = row_trl_sft(cfg, name, "none", defaults=True)
    elif name in ("trl-dpo", "trl-dpo-precompute"):
        out = row_trl_dpo(cfg, name)
    elif name == "events":
        out = row_events(cfg, [0, cfg["watchers"]])
    else:
        raise SystemExit(f"unknown row {name}")
    out["row"] = full_name
    out["row_seconds"] = time.perf_counter() - t0
    print(RESULT_PREFIX + json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Parent: run rows in subprocesses, summarise
# ---------------------------------------------------------------------------------------------------------------

def spawn_row(name: str, config_path: Path, device: str, log_dir: Path) -> dict:
    """Runs one row in a fresh interpreter; returns its result with the child's own peak RSS (wait4)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU row stays on the CPU even on a GPU machine
    if name.partition("@")[0].endswith("-passive"):
        # TRL given the OpenMP setting the product's worker takes on a busy machine (modeling.configure_threads),
        # and the product forced to it on a quiet one, to separate the effect of that setting from the rest.
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if name.partition("@")[0].endswith("-no-onednn"):
        env["TRAINER_CPU_LINEAR"] = "torch"  # the frozen layers by torch's BLAS (worker/cpu_linear.py)
    if name.partition("@")[0].endswith("-peft-lora"):
        env["TRAINER_LORA_PATH"] = "peft"  # the LoRA layers by peft's forward (worker/fused_lora.py)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--row", name,
                                 "--config", str(config_path)], stdout=subprocess.PIPE, stderr=fh, env=env,
                                cwd=REPO)
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [x for x in out.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"row {name} failed (exit {proc.returncode}); log {log}:\n" + "\n".join(tail))
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024  # Linux reports KiB
    return result


def summarise(result: dict, params: int, peak_gflops: float) -> dict:
    """tokens/s and s/step over the steps after the first, loss first -> last, matmul share."""
    steps = result["steps"]
    steady = steps[1:] or steps
    seconds = sum(s["seconds"] for s in steady)
    tokens = sum(s["tokens"] for s in steady)
    tps = tokens / seconds if seconds else 0.0
    rates = [s["tokens"] / s["seconds"] for s in steady if s["seconds"]]
    out = {
        "tokens_per_second_median_step": statistics.median(rates) if rates else 0.0,
        "row": result["row"], "steps": len(steps), "tokens_per_step": sum(s["tokens"] for s in steps) / len(steps),
        "tokens_per_second": tps, "seconds_per_step": seconds / len(steady),
        "first_step_seconds": steps[0]["seconds"], "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"],
        "peak_rss_gib": result["peak_rss_bytes"] / 2**30, "share": 4 * params * tps / 1e9 / peak_gflops,
        "gpu_peak_gib": result.get("gpu_peak_bytes", 0) / 2**30 or None,
    }
    all_tokens = sum(s["tokens"] for s in steps)
    if all(s.get("trained") is not None for s in steps) and all_tokens:
        out["response_share"] = sum(s["trained"] for s in steps) / all_tokens
    if all(s.get("prefix_tokens") is not None for s in steps) and all_tokens:
        out["prefix_share"] = sum(s["prefix_tokens"] for s in steps) / all_tokens
    if result.get("flops"):
        # The work actually done (FlopCounterMode on a step), per token, at the measured rate.
        per_token = result["flops"]["flops"] / max(1, result["flops"]["tokens"])
        out["flops_per_token"] = per_token
        out["work_share"] = per_token * tps / 1e9 / peak_gflops
    if result.get("reference_seconds") is not None:
        # End to end: the one-off reference pass counts against the product's DPO throughput.
        all_seconds = sum(s["seconds"] for s in steps) + result["reference_seconds"]
        out["reference_seconds"] = result["reference_seconds"]
        out["tokens_per_second_with_reference"] = sum(s["tokens"] for s in steps) / all_seconds
    else:
        out["tokens_per_second_with_reference"] = sum(s["tokens"] for s in steps) / sum(s["seconds"] for s in steps)
    return out


def median_row(runs: list[dict]) -> dict:
    """Medians over repeats of a row (the per-run figures stay in the JSON output)."""
    if len(runs) == 1:
        return dict(runs[0])
    out = dict(runs[0])
    for key in ("tokens_per_second", "tokens_per_second_median_step", "seconds_per_step", "first_step_seconds",
                "peak_rss_gib", "share", "tokens_per_second_with_reference", "reference_seconds", "work_share"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    out["repeats"] = len(runs)
    return out


def compare_losses(a: dict, b: dict) -> dict:
    """Per-step loss differences of two rows that trained on the same batches (checked by fingerprint)."""
    n = min(len(a["steps"]), len(b["steps"]))
    same = all(a["steps"][i]["batch"] == b["steps"][i]["batch"] for i in range(n))
    diffs = [abs(a["steps"][i]["loss"] - b["steps"][i]["loss"]) for i in range(n)]
    return {"same_batches": same, "steps": n, "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / n,
            "losses_a": [round(s["loss"], 5) for s in a["steps"][:n]],
            "losses_b": [round(s["loss"], 5) for s in b["steps"][:n]]}


def machine_description(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    model = platform.processor() or "cpu"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs usable, load average {os.getloadavg()[0]:.1f}"


def print_table(rows: list[dict], device: str) -> None:
    """``tokens/s``: plain-equivalent (every token of the batch counted, as if run in full);
    ``plain-eq share``: 4 x parameters x tokens/s over the matmul peak (credits work avoided);
    ``work share``: the FLOPs a step really performs (FlopCounterMode) x steps/s over the peak."""
    head = (f"{'row':<30} {'tokens/step':>11} {'prefix':>6} {'resp.':>6} {'tokens/s':>9} {'median':>7} "
            f"{'s/step':>7} {'loss first->last':>17} {'peak RSS GiB':>12} {'plain-eq share':>14} {'work share':>10}"
            + (f" {'GPU GiB':>8}" if device == "cuda" else ""))
    print(head)
    for r in rows:
        extra = f" {r['gpu_peak_gib'] or 0:>8.2f}" if device == "cuda" else ""
        pct = lambda key, r=r: f"{r[key]:.0%}" if r.get(key) is not None else "-"  # noqa: E731
        print(f"{r['row']:<30} {r['tokens_per_step']:>11.0f} {pct('prefix_share'):>6} {pct('response_share'):>6} "
              f"{r['tokens_per_second']:>9.1f} "
              f"{r['tokens_per_second_median_step']:>7.1f} {r['seconds_per_step']:>7.2f} "
              f"{r['loss_first']:>8.4f} -> {r['loss_last']:<7.4f} "
              f"{r['peak_rss_gib']:>12.2f} {r['share']:>14.0%} {pct('work_share'):>10}{extra}")


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1 (the parser names the option when it refuses one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _dropout(text: str) -> float:
    """An argparse type: a LoRA dropout probability in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--model-path", type=Path, default=None,
                        help="model folder (default: MODELS_DIR/<model id with / as -->)")
    parser.add_argument("--random-init", action="store_true",
                        help="build the model from the folder's config.json + tokenizer with seeded random weights")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default=None,
                        help="with --random-init: another model shape over the folder's config (its tokenizer)")
    parser.add_argument("--sft-records", type=_positive, default=64)
    parser.add_argument("--dpo-pairs", type=_positive, default=32)
    parser.add_argument("--steps", type=_positive, default=20, help="SFT optimizer steps (product and tuned TRL)")
    parser.add_argument("--trl-default-steps", type=_positive, default=3)
    parser.add_argument("--dpo-steps", type=_positive, default=8)
    parser.add_argument("--batch-size", type=_positive, default=4)
    parser.add_argument("--max-seq-length", type=_positive, default=512)
    parser.add_argument("--lora-dropout", type=_dropout, default=0.05, help="SFT rows (DPO rows use 0, TRL's default)")
    parser.add_argument("--threads", type=_positive, default=2, help="torch threads on CPU")
    parser.add_argument("--repeats", type=_positive, default=1, help="runs of the product and tuned-TRL rows (medians)")
    parser.add_argument("--datasets", type=lambda t: t.split(","), default=list(DATASETS),
                        help=f"SFT datasets of the default rows (comma-separated: {', '.join(DATASETS)})")
    parser.add_argument("--rows", default="", help="comma-separated subset of rows to run")
    parser.add_argument("--watchers", type=_positive, default=20)
    parser.add_argument("--event-steps", type=_positive, default=120,
                        help="steps of the tiny-model job of the events row")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="reuse sft.jsonl and dpo.jsonl from here (a previous run's WORK/data) "
                             "instead of exporting")
    parser.add_argument("--json", type=Path, default=None, help="write every figure (per step too) here")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        run_row(args.row, args.config)
        return 0
    if args.architecture and not args.random_init:
        parser.error("--architecture: only with --random-init (the weights are random for another shape)")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="train-bench-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    model_path = args.model_path or args.models_dir / args.model.replace("/", "--")
    if not (model_path / "config.json").is_file():
        parser.error(f"no model folder with config.json at {model_path} (run `make provision`, or pass --model-path)")
    if args.random_init:
        # On CUDA every row computes in bf16: the weights are saved so (half the disk and load time of fp32).
        model_path = random_init_model(model_path, work / f"model-random-init-{args.architecture or 'as-is'}",
                                       seed=1234, overrides=ARCHITECTURES.get(args.architecture),
                                       dtype="bfloat16" if device == "cuda" else "float32")
    t0 = time.perf_counter()
    if args.data_dir:
        # Records exported by an earlier run of this script (for machines without the exporter's packages).
        (work / "data").mkdir(exist_ok=True)
        for name in ("sft.jsonl", "dpo.jsonl"):
            shutil.copy2(args.data_dir / name, work / "data" / name)
        print(f"data: {args.data_dir}", flush=True)
    else:
        export_samples(work / "data", args.sft_records, args.dpo_pairs)
        print(f"data: {args.sft_records} SFT records, {args.dpo_pairs} DPO pairs exported from the sample debates "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    if not all((work / "data" / f"sft-{ds}.jsonl").is_file() for ds in DATASETS[1:]):
        derived_datasets(work / "data", model_path)
    from services.trainer.models import count_parameters

    params = count_parameters(model_path)

    cfg = {"work": str(work), "device": device, "model_id": args.model, "model_path": str(model_path.resolve()),
           "threads": args.threads, "steps": args.steps, "trl_default_steps": args.trl_default_steps,
           "dpo_steps": args.dpo_steps, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
           "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": args.lora_dropout, "target_modules": ["q_proj", "v_proj"],
           "learning_rate": 2e-4, "beta": 0.1, "seed": 42, "watchers": args.watchers, "event_steps": args.event_steps}
    config_path = work / "config.json"
    config_path.write_text(json.dumps(cfg, indent=1))

    paired = ["product-sft", "trl-sft-tuned"]
    if device == "cuda":
        paired += ["trl-sft-liger", "product-sft-4bit", "trl-sft-4bit"]
    else:
        paired += ["trl-sft-tuned-passive"]
    if args.rows:  # any rows, 4-bit ones on CPU too (bitsandbytes runs there, slowly)
        wanted = args.rows.split(",")
        unknown = sorted({w.partition("@")[0] for w in wanted} - set(ROWS)
                         | {w for w in wanted if w.partition("@")[2] not in ("", *DATASETS)})
        if unknown:
            parser.error(f"--rows: unknown {', '.join(unknown)} (known: {', '.join(ROWS)})")
        paired = [r for r in wanted if r.partition("@")[0] in PAIRED_ROWS]
        once = [r for r in wanted if r.partition("@")[0] not in PAIRED_ROWS]
    else:
        # The SFT pair on every dataset, the DPO headline pair, the ablations; then the rows run once.
        paired += [f"{row}@{ds}" for ds in args.datasets if ds != "sample"
                   for row in ("product-sft", "trl-sft-tuned")]
        paired += ["product-dpo", "trl-dpo-precompute", "product-sft-no-prefix", "product-sft-passive",
                   "product-sft-no-onednn@distinct", "product-sft-plain-loss@distinct",
                   "product-sft-peft-lora@distinct"]
        once = ["trl-sft-defaults", "trl-dpo", "product-dpo-no-packing", "product-dpo-no-prefix", "events"]
    plan = [r for _ in range(args.repeats) for r in paired] + once
    print(f"machine: {machine_description(device)}; model {args.model}"
          f"{' shaped as ' + args.architecture if args.architecture else ''} ({params / 1e6:.1f} M parameters"
          f"{', random init' if args.random_init else ''}), batch {args.batch_size}, max_seq_length "
          f"{args.max_seq_length}, LoRA r=8 q_proj/v_proj, gradient checkpointing off (except TRL defaults)",
          flush=True)

    flops = [matmul_tflops(device, args.threads)]
    results: dict[str, list[dict]] = {}
    failed: dict[str, str] = {}
    events = None
    for name in plan:
        t = time.perf_counter()
        try:
            res = spawn_row(name, config_path, device, work / "logs")
        except RuntimeError as exc:
            # One broken row (a library missing on this machine, say) must not lose the others' figures.
            print(f"  {name}: FAILED: {exc}", flush=True)
            failed[name] = str(exc)
            continue
        flops.append(matmul_tflops(device, args.threads))
        if name == "events":
            events = res
        else:
            results.setdefault(name, []).append(res)
        if args.json:  # the rows so far, raw: a run stopped part-way (a time limit) keeps what it measured
            args.json.write_text(json.dumps({"partial": True, "device": device, "params": params, "config": cfg,
                                             "matmul_gflops": flops, "runs": results, "failed_rows": failed}))
        print(f"  {name}: done in {time.perf_counter() - t:.0f} s (load average {os.getloadavg()[0]:.1f})", flush=True)

    peak = statistics.median(f["peak"] for f in flops)
    print(f"\nmatmul throughput ({'bf16' if device == 'cuda' else f'fp32, {args.threads} threads'}), median of "
          f"{len(flops)} samples around the rows: " + ", ".join(
              f"{k} {statistics.median(f[k] for f in flops):.0f} GFLOP/s" for k in flops[0]))
    rows = []
    for _name, runs in results.items():
        rows.append(median_row([summarise(r, params, peak) for r in runs]))
    print()
    print_table(rows, device)
    by = {r["row"]: r for r in rows}
    report: dict = {"device": device, "machine": machine_description(device), "params": params,
                    "matmul_gflops": flops, "peak_gflops": peak, "config": cfg, "rows": rows,
                    "runs": {k: v for k, v in results.items()}}

    def ratio(a: str, b: str, key: str = "tokens_per_second") -> float | None:
        return by[a][key] / by[b][key] if a in by and b in by and by[b][key] else None

    def spread(a: str, b: str, key: str = "tokens_per_second") -> str:
        """The ratio of a and b per repeat (runs interleaved in that order): median [min-max]."""
        if a not in results or b not in results:
            return ""
        ra = [summarise(r, params, peak)[key] for r in results[a]]
        rb = [summarise(r, params, peak)[key] for r in results[b]]
        xs = [x / y for x, y in zip(ra, rb) if y]
        if len(xs) < 2:
            return ""
        return f"; per repeat {statistics.median(xs):.2f}x [{min(xs):.2f}-{max(xs):.2f}] over {len(xs)}"

    print()
    for ds in DATASETS:
        a, b = (f"product-sft@{ds}", f"trl-sft-tuned@{ds}") if ds != "sample" else ("product-sft", "trl-sft-tuned")
        if ratio(a, b):
            r = by[a]
            print(f"SFT on {ds} data (prefix {r.get('prefix_share', 0):.0%}, response {r.get('response_share', 0):.0%}"
                  f" of the tokens): product {ratio(a, b):.2f}x tuned TRL{spread(a, b)}; real work "
                  f"{r.get('work_share', 0):.0%} vs TRL {by[b].get('work_share', 0):.0%} of the matmul peak; "
                  f"peak RSS {r['peak_rss_gib']:.2f} vs {by[b]['peak_rss_gib']:.2f} GiB")
        trl_rows = [r for r in (b, b.replace("trl-sft-tuned", "trl-sft-liger")) if r in by]
        if a in by and len(trl_rows) > 1:  # the goal on a GPU: the product against TRL's best row
            best = max(trl_rows, key=lambda r: by[r]["tokens_per_second"])
            mem = "gpu_peak_gib" if device == "cuda" else "peak_rss_gib"
            print(f"SFT on {ds} data: product {ratio(a, best):.2f}x the best TRL row ({best}{spread(a, best)}); "
                  f"peak {'GPU memory' if device == 'cuda' else 'RSS'} {by[a][mem] or 0:.2f} vs "
                  f"{by[best][mem] or 0:.2f} GiB")
    e2e = "tokens_per_second_with_reference"
    if ratio("product-dpo", "trl-dpo-precompute", e2e):
        print(f"DPO end to end (each side's reference pass included; TRL precompute_ref_log_probs=True, its "
              f"constructor timed: {by['trl-dpo-precompute']['reference_seconds']:.1f} s; the product's "
              f"{by['product-dpo']['reference_seconds']:.1f} s): product "
              f"{ratio('product-dpo', 'trl-dpo-precompute', e2e):.2f}x"
              f"{spread('product-dpo', 'trl-dpo-precompute', e2e)}")
    for a, b in (("product-sft-no-prefix", "product-sft"), ("product-sft-passive", "product-sft"),
                 ("product-sft-no-onednn@distinct", "product-sft@distinct"),
                 ("product-sft-plain-loss@distinct", "product-sft@distinct"),
                 ("product-sft-peft-lora@distinct", "product-sft@distinct"),
                 ("product-dpo-no-packing", "product-dpo"), ("product-dpo-no-prefix", "product-dpo"),
                 ("product-dpo-plain-loss", "product-dpo")):
        if ratio(a, b):
            print(f"ablation {a}: {ratio(a, b):.2f}x the tokens/s of {b}{spread(a, b)}")

    print()
    suffixes = [""] + [f"@{ds}" for ds in DATASETS[1:]]
    for a, b in [(x + sfx, y + sfx) for sfx in suffixes for x, y in (
            ("product-sft", "trl-sft-tuned"), ("product-sft", "trl-sft-tuned-passive"),
            ("product-sft", "trl-sft-liger"), ("product-sft", "trl-sft-defaults"),
            ("product-sft-4bit", "trl-sft-4bit"))]:
        if ratio(a, b):
            print(f"{a} vs {b}: {ratio(a, b):.2f}x tokens/s "
                  f"({ratio(a, b, 'tokens_per_second_median_step'):.2f}x on median steps)")
    if ratio("product-dpo", "trl-dpo"):
        print(f"product-dpo vs trl-dpo: {ratio('product-dpo', 'trl-dpo'):.2f}x tokens/s over training steps, "
              f"{ratio('product-dpo', 'trl-dpo', 'tokens_per_second_with_reference'):.2f}x counting the product's "
              f"one-off reference pass ({by['product-dpo']['reference_seconds']:.1f} s)")
    comparisons = {}
    for a, b in [(x + sfx, y + sfx) for sfx in suffixes for x, y in (
            ("product-sft", "trl-sft-tuned"), ("product-sft", "trl-sft-tuned-passive"),
            ("product-sft", "trl-sft-liger"), ("product-sft-4bit", "trl-sft-4bit"))] + [("product-dpo", "trl-dpo")]:
        if a in results and b in results:
            c = compare_losses(results[a][0], results[b][0])
            comparisons[f"{a} vs {b}"] = c
            print(f"loss curve {a} vs {b}: same batches {c['same_batches']}, max |diff| {c['max_abs_diff']:.2e}, "
                  f"mean |diff| {c['mean_abs_diff']:.2e} over {c['steps']} steps")
    report["loss_comparisons"] = comparisons
    report["failed_rows"] = failed
    for name, why in failed.items():
        print(f"row {name} FAILED: {why.splitlines()[-1]}")
    if events:
        report["events"] = events
        sft_step = by.get("product-sft", {}).get("seconds_per_step")
        print()
        for run in events["runs"]:
            share = f", {run['cpu_ms_per_step_event'] / 1000 / sft_step:.3%} of a product SFT step" if sft_step else ""
            print(f"progress reporting, {run['watchers']} watchers: service + watchers CPU "
                  f"{run['cpu_ms_per_step_event']:.2f} ms per step event{share} ({run['step_events']} step events, "
                  f"job {run['status']})")
        print(f"worker side: {events['worker_emit_us']:.0f} us to write one step event")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nall figures: {args.json}")
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
