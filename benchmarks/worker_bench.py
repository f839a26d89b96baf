"""``python benchmarks/worker_bench.py``: measure the worker's training throughput on a real model.

Runs the real worker (a subprocess, exactly as a job runs) on synthetic SFT records of debate-like length and
prints trained tokens/s (non-padding tokens, the figure step events report), s/step, and the loss first -> last,
for each requested ``max_seq_length``. Steady-state figures leave out the first step (allocator and kernel
warm-up). Example (the figures in docs/trainer_worker.md):

    .venv/bin/python benchmarks/worker_bench.py --max-seq-length 256 512 --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.trainer.models import DEFAULT_MODEL_ID, resolve_model  # noqa: E402  (after the path)

TOPICS = ("contract law", "clinical dosing", "code review", "market risk", "data privacy", "medical ethics",
          "software testing", "liability", "evidence", "appeals")
WORDS = ("the court held that a party may rely on the clause only when the agreement was signed and the statute "
         "allows it; however evidence shows the risk to patients rises with the dose, so the function must "
         "validate its input before the test suite runs, because a market shock changes the expected return "
         "and reviewers should weigh each argument on its merits rather than on who made it").split()


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """SFT records with prompts of ~40-120 words and answers of ~30-300 words (debate-like spread)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 300)))
        out.append({"instruction": f"Give the consensus answer of the debate on {topic}.", "input": q + "?",
                    "output": a + ".", "metadata": {"debate_id": f"bench-{i}", "vertical": "general"}})
    return out


def matmul_gflops(threads: int | None, size: int = 2048, repeat: int = 8) -> float:
    """The machine's fp32 matmul throughput now, with the worker's thread count (the bound a step can reach)."""
    import time

    import torch

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    x = torch.randn(size, size)
    x @ x
    t0 = time.perf_counter()
    for _ in range(repeat):
        x @ x
    return repeat * 2 * size**3 / (time.perf_counter() - t0) / 1e9


def run_once(model_id: str, models_dir: Path, records: list[dict], max_len: int, args) -> dict:
    model = resolve_model(models_dir, model_id)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.work_dir))
    data = work / "data"
    data.mkdir()
    (data / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    job_dir = work / "job"
    job_dir.mkdir()
    config = {"dataset_path": "sft.jsonl", "quantization": args.quantization, "num_epochs": 100,
              "batch_size": args.batch_size, "max_seq_length": max_len, "max_steps": args.steps,
              "gradient_checkpointing": args.gradient_checkpointing, "lora_r": 8,
              "target_modules": ["q_proj", "v_proj"], "learning_rate": 2e-4}
    from services.trainer.spec import validate_spec

    spec = validate_spec(config, model, data)
    from services.trainer.artifacts import JobLayout
    from services.trainer.protocol import JobFile

    layout = JobLayout(job_dir)
    JobFile(job_id="bench", base_model=model.id, model_path=str(model.path),
            training_config=spec.model_dump(mode="json"), data_root=str(data), checkpoint_every_steps=10**9,
            num_threads=args.threads).write(layout.job_file)
    with open(layout.worker_log, "wb") as log:
        proc = subprocess.run([sys.executable, "-m", "services.trainer.worker", str(job_dir)], stdout=subprocess.PIPE,
                              stderr=log, cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    events = [json.loads(x) for x in proc.stdout.decode().splitlines() if x.startswith("{")]
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({proc.returncode}): {[e['message'] for e in events][-3:]}; "
                         f"log: {layout.worker_log}")
    steps = [e for e in events if e["type"] == "step"]
    metrics = json.loads(layout.metrics_file.read_text())
    per_step = metrics["losses"]
    steady = per_step[1:] or per_step
    row = {
        "max_seq_length": max_len, "steps": len(per_step), "quantization": metrics["quantization"],
        "tokens_per_second_all": metrics["tokens_per_second"],
        "tokens_per_second_steady": sum(x["tokens"] for x in steady) / sum(x["seconds"] for x in steady),
        "seconds_per_step": sum(x["seconds"] for x in steady) / len(steady),
        "tokens_per_step": sum(x["tokens"] for x in per_step) / len(per_step),
        "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"],
        "truncated": metrics["truncated_examples"],
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/worker_bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL_ID)
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--max-seq-length", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--quantization", default="none", choices=["none", "4bit", "8bit"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--keep", action="store_true", help="keep the job folders")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    records = synthetic_records(args.records)
    print(f"model {args.model}, batch {args.batch_size}, LoRA r=8 q_proj/v_proj, {args.quantization}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, {args.steps} steps, "
          f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}")
    params = resolve_model(args.models_dir, args.model).parameters
    print(f"{'max_seq_len':>11} {'tokens/step':>11} {'tok/s steady':>12} {'tok/s all':>9} {'s/step':>7} "
          f"{'loss first->last':>17} {'matmul GFLOP/s':>14} {'share':>6}")
    for max_len in args.max_seq_length:
        before = matmul_gflops(args.threads)
        r = run_once(args.model, args.models_dir, records, max_len, args)
        gflops = (before + matmul_gflops(args.threads)) / 2  # the machine is shared: sample around the run
        # A LoRA step costs about 4 x parameters x tokens FLOPs (forward 2, backward through frozen weights 2).
        share = 4 * params * r["tokens_per_second_steady"] / 1e9 / gflops
        print(f"{max_len:>11} {r['tokens_per_step']:>11.0f} {r['tokens_per_second_steady']:>12.1f} "
              f"{r['tokens_per_second_all']:>9.1f} {r['seconds_per_step']:>7.2f} {r['loss_first']:>8.3f} -> "
              f"{r['loss_last']:<7.3f} {gflops:>14.1f} {share:>6.0%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
