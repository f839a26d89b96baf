"""The job a user gets by default, timed: the guide's training config (4-bit QLoRA, gradient checkpointing on) for
a few steps on the sample debates, then the held-out evaluation, as the worker runs it.

    .venv/bin/python benchmarks/default_job_bench.py                  # every row, once
    .venv/bin/python benchmarks/default_job_bench.py --repeats 2 --rows default,default-levers-off

Rows (each in its own subprocess, its peak RSS its own; ``run_job`` in-process, the worker's code path):

- ``default``: the guide's defaults (``quantization: 4bit``, ``gradient_checkpointing: true``, batch 4, LoRA r=8,
  dropout 0.05) with every lever on.
- ``default-levers-off`` (training only; ``default-levers-off-eval`` with its evaluation, ~25 min): the same
  job as before these levers: bitsandbytes' own CPU 4-bit path (which, after
  the load's no-grad smoke forward, passes no gradient through the base layers: the loss does not move), the
  shared-prefix path off under checkpointing, and the evaluation as it was (every held-out record and pair
  whatever the job's size, the samples generated one at a time).
- ``default-no-dequant`` / ``default-no-gc-prefix``: one training lever off each (ablation; no-dequant is
  bitsandbytes' CPU path again, which computes no base-layer gradients).
- ``default-no-cache``: the dequantized forward without the kept copies (``TRAINER_DEQUANTIZED_CACHE=off``:
  each matmul dequantizes, forward and backward, as bitsandbytes' training path does): what a correct 4-bit
  step costs at the 4-bit memory footprint.
- ``default-no-onednn``: the dequantized matmuls and the other frozen layers by torch's BLAS instead of oneDNN
  (``TRAINER_CPU_LINEAR=torch``, ``worker/cpu_linear.py``).
- ``default-peft-lora``: the LoRA layers by peft's forward instead of one fused step each
  (``TRAINER_LORA_PATH=peft``, ``worker/fused_lora.py``) and the key/value heads repeated as transformers does by
  default (``TRANSFORMERS_SDPA_FORCE_GQA=0``, ``modeling.group_gqa_attention``).
- ``bench-config``: ``quantization: none``, ``gradient_checkpointing: false`` (the training benchmark's setup).

The held-out data is the sample debates' held-out split exported in-process (as the exporter serves it); the
evaluation settings are the worker's defaults (``TRAINER_EVAL_*``). For each row: training tokens/s (padding
excluded, as the step events report) and s/step, loss first -> last, training CPU seconds, evaluation seconds
(held-out loss, preference pairs, samples), peak RSS. The machine is shared: compare rows of the same run, and
repeat (``--repeats``, interleaved; medians and ranges are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

from services.trainer.models import DEFAULT_MODEL_ID  # noqa: E402  (after the path)

RESULT_PREFIX = "BENCH-RESULT "
ROWS = {
    "default": {"quantization": "4bit", "gradient_checkpointing": True},
    "default-levers-off": {"quantization": "4bit", "gradient_checkpointing": True,
                           "off": ["dequant", "gc-prefix", "eval"], "train_only": True},
    "default-levers-off-eval": {"quantization": "4bit", "gradient_checkpointing": True,
                                "off": ["dequant", "gc-prefix", "eval"]},
    "default-no-dequant": {"quantization": "4bit", "gradient_checkpointing": True, "off": ["dequant"],
                           "train_only": True},
    "default-no-gc-prefix": {"quantization": "4bit", "gradient_checkpointing": True, "off": ["gc-prefix"],
                             "train_only": True},
    "default-no-cache": {"quantization": "4bit", "gradient_checkpointing": True, "train_only": True,
                         "env": {"TRAINER_DEQUANTIZED_CACHE": "off"}},
    "default-no-onednn": {"quantization": "4bit", "gradient_checkpointing": True, "train_only": True,
                          "env": {"TRAINER_CPU_LINEAR": "torch"}},
    "default-peft-lora": {"quantization": "4bit", "gradient_checkpointing": True, "train_only": True,
                          "env": {"TRAINER_LORA_PATH": "peft", "TRANSFORMERS_SDPA_FORCE_GQA": "0"}},
    "default-no-eval-levers": {"quantization": "4bit", "gradient_checkpointing": True, "off": ["eval"]},
    "bench-config": {"quantization": "none", "gradient_checkpointing": False, "train_only": True},
}
"""``train_only``: the ablation rows of training levers skip the evaluation (TRAINER_EVAL_ENABLED=false)."""


def export_data(out: Path, train_n: int, eval_sft: int, eval_pairs: int) -> None:
    """SFT train records and the held-out SFT records and DPO pairs, from the sample debates (in-process
    exporter on a temporary SQLite store, the filters a default job uses)."""
    from services.trainer.worker.sources import balanced_take
    from tests.support.sample_exports import sample_records

    out.mkdir(parents=True, exist_ok=True)
    train, held_sft, held_dpo = sample_records(
        ("sft", {"limit": train_n, "split": "train", "min_confidence": 0.7}),
        ("sft", {"split": "heldout", "min_confidence": 0.7}),
        ("dpo", {"split": "heldout", "min_confidence_diff": 0.0}))
    held_sft, held_dpo = balanced_take(held_sft, eval_sft), balanced_take(held_dpo, eval_pairs)
    for name, rows in (("sft.jsonl", train), ("heldout_sft.jsonl", held_sft), ("heldout_dpo.jsonl", held_dpo)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _levers_off(off: list[str]) -> None:
    """Turns the named levers off in this (row) process, restoring the code paths they replaced."""
    if "dequant" in off:
        from services.trainer.worker import quantized

        quantized.use_dequantized_forward = lambda model, dtype: {"layers": 0, "cached": False, "cache_bytes": 0}
    if "gc-prefix" in off:
        from services.trainer.worker import logprobs

        can_share = logprobs.can_share
        logprobs.can_share = lambda decoder, width=0: (not logprobs.checkpointing(decoder)
                                                        and can_share(decoder, width))
    if "eval" in off:
        from services.trainer.worker import evaluate

        batched = evaluate._generate  # samples one at a time, each its own generate
        evaluate._generate = lambda model, prompts, adapters, *args: [
            batched(model, [p], [a], *args)[0] for p, a in zip(prompts, adapters, strict=True)]
        os.environ["TRAINER_EVAL_MAX_COST_RATIO"] = "0"  # every held-out record and pair, whatever the job's size


def run_row(name: str, cfg: dict) -> dict:
    spec = ROWS[name]
    _levers_off(spec.get("off", []))
    os.environ.update(spec.get("env", {}))
    train_only = cfg.get("train_only") or spec.get("train_only")
    if train_only:
        os.environ["TRAINER_EVAL_ENABLED"] = "false"
    from services.trainer.worker import sources
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.runner import run_job
    from services.trainer.worker.signals import StopGuard
    from services.trainer.worker.sources import DPO_PAIRS, SFT_RECORDS, HeldOut, read_jsonl

    data = Path(cfg["work"]) / "data"
    held = HeldOut(read_jsonl(data / "heldout_sft.jsonl", SFT_RECORDS, "heldout_sft.jsonl"),
                   read_jsonl(data / "heldout_dpo.jsonl", DPO_PAIRS, "heldout_dpo.jsonl"), source="bench export")
    held.available_sft, held.available_pairs = len(held.sft), len(held.pairs)
    if not train_only:
        sources.load_heldout = lambda job, events, settings: held  # the exporter's held-out split, exported above

    job_dir = Path(cfg["work"]) / f"job-{name}"
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    training_config = {"dataset_path": "sft.jsonl", "max_steps": cfg["steps"], "num_epochs": 100,
                       "quantization": spec["quantization"], "gradient_checkpointing": spec["gradient_checkpointing"]}
    (job_dir / "job.json").write_text(json.dumps({
        "job_id": f"bench-{name}", "name": name, "vertical": "", "base_model": cfg["model_id"],
        "model_path": cfg["model_path"], "training_config": training_config, "data_root": str(data),
        "checkpoint_every_steps": 10**9, "num_threads": cfg["threads"]}))

    class Recorder(EventSink):
        def __init__(self) -> None:
            super().__init__(open(os.devnull, "w", buffering=1, encoding="utf-8"))
            self.events: list[tuple[float, float, dict]] = []

        def emit(self, type: str, message: str = "", **fields) -> None:
            super().emit(type, message, **fields)
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            self.events.append((time.perf_counter(), cpu.ru_utime + cpu.ru_stime,
                                {"type": type, "message": message, **fields}))

    sink = Recorder()
    t0 = time.perf_counter()
    if run_job(job_dir, sink, StopGuard()) != 0:
        raise RuntimeError("run_job failed")
    wall = time.perf_counter() - t0
    metrics = json.loads((job_dir / "metrics.json").read_text())
    ev = sink.events
    start = next((t, c) for t, c, e in ev if e["type"] == "status" and e.get("status") == "training")
    steps = [(t, c, e) for t, c, e in ev if e["type"] == "step"]
    end = (steps[-1][0], steps[-1][1])
    eval_start = next(((t, c) for t, c, e in ev if e["type"] == "eval" and e.get("phase") == "start"), end)
    eval_done = next(((t, c) for t, c, e in ev if e["type"] == "eval" and e.get("phase") == "done"), end)
    phases: dict[str, float] = {}
    last = eval_start[0]
    for t, _, e in ev:
        if e["type"] == "eval" and e.get("phase") not in ("start", "done") and t >= eval_start[0]:
            key = e["phase"].split(": ")[-1]
            phases[key] = phases.get(key, 0.0) + (t - last)
            last = t
    samples = json.loads((job_dir / "eval" / "samples.json").read_text()) if (
        job_dir / "eval" / "samples.json").is_file() else {"samples": []}
    out = {
        "row": name, "quantization": metrics["quantization"], "steps": metrics["steps"],
        "tokens": metrics["tokens_seen"], "train_seconds": steps[-1][0] - start[0],
        "train_cpu_seconds": steps[-1][1] - start[1],
        "step_seconds": [e["extra"].get("seconds") or 0 for *_, e in steps],
        "losses": [e["loss"] for *_, e in steps], "grad_norms": [e["extra"]["grad_norm"] for *_, e in steps],
        "eval_seconds": eval_done[0] - eval_start[0], "eval_cpu_seconds": eval_done[1] - eval_start[1],
        "eval_phases": phases, "wall_seconds": wall,
        "heldout_loss": [(metrics.get("base") or {}).get("heldout_loss"),
                         (metrics.get("adapter") or {}).get("heldout_loss")],
        "eval_records": [metrics.get("eval_sft_records"), metrics.get("eval_dpo_pairs")],
        "sample_answers": [(s["base"], s["adapter"]) for s in samples["samples"]],
    }
    out["tokens_per_second"] = out["tokens"] / out["train_seconds"]
    return out


def spawn(name: str, config_path: Path, log_dir: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="",
               PYTHONUNBUFFERED="1")
    log = log_dir / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--row", name, "--config",
                                 str(config_path)], stdout=subprocess.PIPE, stderr=fh, env=env, cwd=REPO)
        text = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
    lines = [x for x in text.splitlines() if x.startswith(RESULT_PREFIX)]
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"row {name} failed; log {log}:\n{tail}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["peak_rss_gib"] = usage.ru_maxrss * 1024 / 2**30
    return result


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL_ID)
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--train-records", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--train-only", action="store_true",
                        help="no evaluation after training (TRAINER_EVAL_ENABLED=false)")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        print(RESULT_PREFIX + json.dumps(run_row(args.row, json.loads(args.config.read_text()))), flush=True)
        return 0
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)} (known: {', '.join(ROWS)})")
    model_path = args.models_dir / args.model.replace("/", "--")
    if not (model_path / "config.json").is_file():
        parser.error(f"no model at {model_path} (run `python -m services.trainer provision`)")
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="default-job-bench-"))).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    from services.trainer.worker.evaluate import EvalSettings

    settings = EvalSettings()
    export_data(work / "data", args.train_records, settings.max_sft_records, settings.max_pairs)
    cfg = {"work": str(work), "model_id": args.model, "model_path": str(model_path.resolve()), "steps": args.steps,
           "threads": args.threads, "train_only": args.train_only}
    config_path = work / "config.json"
    config_path.write_text(json.dumps(cfg))
    print(f"{args.model}, {args.steps} steps of the guide's default job on {args.train_records} sample SFT records, "
          f"evaluation on {settings.max_sft_records} held-out records / {settings.max_pairs} pairs / "
          f"{settings.samples} samples of <= {settings.sample_max_new_tokens} tokens; {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name in rows:
            t = time.perf_counter()
            res = spawn(name, config_path, work / "logs")
            results.setdefault(name, []).append(res)
            phases = ", ".join(f"{k} {v:.0f} s" for k, v in res["eval_phases"].items())
            print(f"  {name}: {res['tokens_per_second']:.1f} tokens/s ({res['train_seconds']:.0f} s, CPU "
                  f"{res['train_cpu_seconds']:.0f} s; grad norms {', '.join(f'{g:.3f}' for g in res['grad_norms'])}), "
                  f"eval {res['eval_seconds']:.0f} s (CPU {res['eval_cpu_seconds']:.0f} s; {phases}) "
                  f"({time.perf_counter() - t:.0f} s, load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n{'row':<24} {'tokens/s':>18} {'train CPU s':>12} {'loss first->last':>17} {'eval s':>18} "
          f"{'eval phases s (loss/pairs/samples)':>36} {'RSS GiB':>8}")
    for name, runs in results.items():
        r0 = runs[0]
        phases = "/".join(f"{statistics.median(r['eval_phases'].get(k, 0) for r in runs):.0f}"
                          for k in ("held-out loss", "preference", "samples"))
        print(f"{name:<24} {_spread([r['tokens_per_second'] for r in runs]):>18} "
              f"{statistics.median(r['train_cpu_seconds'] for r in runs):>12.1f} "
              f"{r0['losses'][0]:>8.4f} -> {r0['losses'][-1]:<7.4f} {_spread([r['eval_seconds'] for r in runs]):>18} "
              f"{phases:>36} {max(r['peak_rss_gib'] for r in runs):>8.2f}")
    if "default" in results and "default-levers-off" in results:
        ratios = [a["tokens_per_second"] / b["tokens_per_second"]
                  for a, b in zip(results["default"], results["default-levers-off"])]
        evals = [b["eval_seconds"] / a["eval_seconds"]
                 for a, b in zip(results["default"], results["default-levers-off"])
                 if a["eval_seconds"] and b["eval_seconds"]]  # (a train-only row has no evaluation)
        print(f"\ndefault job, levers on vs off: training {_spread(ratios)}x tokens/s (per repeat: "
              f"{', '.join(f'{x:.2f}' for x in ratios)})"
              + (f", evaluation {_spread(evals)}x faster" if evals else ""))
        d = results["default"]
        print("evaluation / training time with the levers: "
              + ", ".join(f"{r['eval_seconds'] / r['train_seconds']:.2f}" for r in d))
    if args.json:
        args.json.write_text(json.dumps({"config": cfg, "results": results}, indent=1))
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
