"""Does the adapter beat the base model? One SFT and one DPO job through the real services, base vs adapter.

    .venv/bin/python benchmarks/quality_bench.py                     # the run recorded in docs/evaluation.md
    .venv/bin/python benchmarks/quality_bench.py --sft-steps 8 --dpo-steps 8 --eval-pairs 10   # a quick look

1. Starts the exporter (a fresh SQLite file under a temporary folder, loaded with the bundled sample debates),
   the trainer (its own database, jobs folder and data root there; models from ``var/models``) and the gateway
   as separate processes on free ports, exactly as ``make up`` runs them.
2. Through the gateway's REST API: creates and starts an SFT job, follows its event stream (SSE) to the end,
   checks that its metrics were a 409 while it ran, reads ``GET /metrics`` and the ``eval/samples.json``
   artifact; then the same for a DPO job on the exporter's preference pairs.
3. Prints base vs adapter for both jobs: held-out loss and perplexity, preference accuracy (overall and per
   vertical), win rate and Elo, the evaluation set sizes, training and evaluation times; writes everything to
   ``<workdir>/results.json``.

Every figure comes from the job's own evaluation (``services/trainer/worker/evaluate.py``) on the exporter's
held-out split, which neither job trains on. The evaluation set is capped (``--eval-pairs``, ``--eval-sft``)
so a CPU run stays within about half an hour; the caps take records round-robin across verticals.

On a 2-core machine shared with other work, torch's two threads wait on each other whenever another process
holds a core (measured here: 1 thread ~3x faster than 2 at a load average of ~7), so by default the trainer and
its workers are pinned to one CPU (``--cpus``); ``--cpus all`` leaves the affinity alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.trainer.models import DEFAULT_MODEL_ID as DEFAULT_MODEL
from tests.support.net import free_port
from tests.support.services import ServiceProcess


def wait_healthy(api: httpx.Client, services: list[ServiceProcess], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in services:
            if s.proc.poll() is not None:
                raise SystemExit(f"{s.name} exited with {s.proc.returncode}:\n{s.tail()}")
        try:
            models = api.get("/api/training/models", timeout=5)
            stats = api.get("/api/training/stats", timeout=5)
            if models.status_code == 200 and stats.status_code == 200 and stats.json().get("total_debates"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the services did not come up in time:\n" + "\n".join(s.tail() for s in services))


def follow(api: httpx.Client, job_id: str, label: str) -> dict:
    """Prints the job's step and eval events as they arrive (SSE) until the stream ends; returns the job."""
    last_print = 0.0
    with api.stream("GET", f"/api/training/jobs/{job_id}/events", timeout=httpx.Timeout(10, read=None)) as r:
        r.raise_for_status()
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                now = time.monotonic()
                if event == "step":
                    extra = " ".join(f"{k} {v:.3f}" for k, v in data["extra"].items() if k.startswith("reward"))
                    if now - last_print > 20 or data["step"] == data["total_steps"]:
                        last_print = now
                        print(f"  [{label}] step {data['step']}/{data['total_steps']} loss {data['loss']:.4f} "
                              f"{data['tokens_per_second']:.0f} tok/s {extra}", flush=True)
                elif event == "eval":
                    if data["phase"] in ("start", "done", "reference") and (
                            data["phase"] != "reference" or data["done"] == data["total"]) or now - last_print > 30:
                        last_print = now
                        print(f"  [{label}] eval: {data['message']}", flush=True)
                elif event in ("status", "warning", "error"):
                    print(f"  [{label}] {event}: {data['message']}", flush=True)
                elif event == "end":
                    break
    return api.get(f"/api/training/jobs/{job_id}").json()


def run_job(api: httpx.Client, label: str, body: dict) -> dict:
    t0 = time.monotonic()
    r = api.post("/api/training/jobs", json=body)
    if r.status_code != 201:
        raise SystemExit(f"{label}: create failed {r.status_code}: {r.text}")
    job = r.json()
    early = api.get(f"/api/training/jobs/{job['id']}/metrics")
    api.post(f"/api/training/jobs/{job['id']}/start").raise_for_status()
    print(f"{label}: job {job['id']} started (metrics before completion: HTTP {early.status_code})", flush=True)
    final = follow(api, job["id"], label)
    wall = time.monotonic() - t0
    if final["status"] != "completed":
        raise SystemExit(f"{label}: job ended {final['status']}: {final.get('error')}")
    metrics = api.get(f"/api/training/jobs/{job['id']}/metrics").json()
    worker = {}
    samples = []
    r = api.get(f"/api/training/jobs/{job['id']}/artifacts/metrics.json")
    if r.status_code == 200:
        worker = r.json()
    r = api.get(f"/api/training/jobs/{job['id']}/artifacts/eval/samples.json")
    if r.status_code == 200:
        samples = r.json().get("samples", [])
    return {"label": label, "job": final, "metrics": metrics, "worker": worker, "samples": samples,
            "early_metrics_status": early.status_code, "wall_seconds": round(wall, 1)}


def fmt(v, spec=".3f") -> str:
    return "—" if v is None else format(v, spec)


def table(results: list[dict]) -> str:
    heads = []
    for res in results:
        heads += [f"{res['label']} base", f"{res['label']} adapter"]
    rows: list[tuple[str, list[str]]] = []

    def pair_row(name: str, key: str, spec: str = ".3f") -> None:
        cells = []
        for res in results:
            m = res["metrics"]
            cells += [fmt((m.get("base") or {}).get(key), spec), fmt((m.get("adapter") or {}).get(key), spec)]
        rows.append((name, cells))

    pair_row("held-out loss (nats/token)", "heldout_loss", ".4f")
    pair_row("perplexity", "perplexity", ".2f")
    pair_row("preference accuracy", "preference_accuracy")
    verticals = sorted({v for res in results
                        for v in (res["metrics"].get("adapter") or {}).get("vertical_accuracy", {})})
    for v in verticals:
        cells = []
        for res in results:
            m = res["metrics"]
            cells += [fmt((m.get("base") or {}).get("vertical_accuracy", {}).get(v)),
                      fmt((m.get("adapter") or {}).get("vertical_accuracy", {}).get(v))]
        rows.append((f"  accuracy: {v}", cells))
    for name, key, spec in (("win rate vs base", "win_rate", ".3f"), ("Elo (base = 1500)", "elo_rating", ".0f")):
        cells = []
        for res in results:
            cells += ["", fmt(res["metrics"].get(key), spec)]
        rows.append((name, cells))
    cells = []
    for res in results:
        w = res["worker"].get("evaluation", {})
        record = f"{w.get('wins', '?')}/{w.get('draws', '?')}/{w.get('losses', '?')}"
        cells += ["", f"{record} of {res['metrics']['eval_matches']}"]
    rows.append(("matches won/drawn/lost", cells))
    cells = []
    for res in results:
        m = res["metrics"]
        cells += [f"{m['eval_sft_records']} SFT / {m['eval_dpo_pairs']} pairs", ""]
    rows.append(("held-out set", cells))
    cells = []
    for res in results:
        w = res["worker"]
        cells += [f"{w.get('training_examples')} ex, {w.get('steps')} steps",
                  f"final loss {fmt(res['metrics'].get('final_loss'), '.4f')}"]
    rows.append(("training", cells))
    cells = []
    for res in results:
        w = res["worker"]
        cells += [f"train {w.get('train_seconds', 0):.0f} s",
                  f"eval {w.get('evaluation', {}).get('seconds', 0):.0f} s, job {res['wall_seconds']:.0f} s"]
    rows.append(("time", cells))

    width0 = max(len(r[0]) for r in rows)
    widths = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    out = ["| " + " | ".join([" " * width0] + [h.ljust(w) for h, w in zip(heads, widths)]) + " |",
           "|" + "|".join(["-" * (width0 + 2)] + ["-" * (w + 2) for w in widths]) + "|"]
    for name, cells in rows:
        out.append("| " + " | ".join([name.ljust(width0)] + [c.ljust(w) for c, w in zip(cells, widths)]) + " |")
    return "\n".join(out)


def machine() -> str:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    dev = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {cpu or platform.processor()}, {os.cpu_count()} CPUs, {dev}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    ap.add_argument("--vertical", default="", help="train and evaluate on one vertical (default: all)")
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--sft-steps", type=int, default=24)
    ap.add_argument("--sft-batch", type=int, default=4)
    ap.add_argument("--sft-lr", type=float, default=2e-3)
    ap.add_argument("--dpo-steps", type=int, default=32)
    ap.add_argument("--dpo-batch", type=int, default=2)
    ap.add_argument("--dpo-lr", type=float, default=1e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--eval-pairs", type=int, default=30, help="held-out DPO pairs evaluated (per job)")
    ap.add_argument("--eval-sft", type=int, default=15, help="held-out SFT records evaluated (per job)")
    ap.add_argument("--samples", type=int, default=2, help="held-out prompts answered by base and adapter")
    ap.add_argument("--sample-tokens", type=int, default=40)
    ap.add_argument("--methods", default="sft,dpo")
    ap.add_argument("--cpus", default="1", help="'all', or how many CPUs to pin the trainer and its workers to")
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder, removed)")
    args = ap.parse_args()

    model_dir = args.models_dir / args.model.replace("/", "--")
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"{model_dir} is missing: run `python -m services.trainer provision` first")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="quality-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cpus = None
    if args.cpus != "all":
        avail = sorted(os.sched_getaffinity(0))
        cpus = set(avail[-int(args.cpus):])
    ports = {n: free_port() for n in ("exporter", "trainer", "gateway")}
    base_env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env_exp = dict(base_env, EXPORTER_PORT=str(ports["exporter"]),
                   EXPORTER_DATABASE_URL=f"sqlite:///{work}/exporter/debates.db",
                   EXPORTER_EXPORT_DIR=str(work / "exports"), EXPORTER_LOAD_SAMPLES="true")
    env_tr = dict(base_env, TRAINER_PORT=str(ports["trainer"]),
                  TRAINER_DATABASE_URL=f"sqlite:///{work}/trainer/jobs.db", TRAINER_JOBS_DIR=str(work / "jobs"),
                  TRAINER_MODELS_DIR=str(args.models_dir), TRAINER_DATA_ROOT=str(work / "data"),
                  TRAINER_EXPORTER_ADDRESS=f"127.0.0.1:{ports['exporter']}",
                  TRAINER_EVAL_MAX_PAIRS=str(args.eval_pairs), TRAINER_EVAL_MAX_SFT_RECORDS=str(args.eval_sft),
                  TRAINER_EVAL_SAMPLES=str(args.samples), TRAINER_EVAL_SAMPLE_MAX_NEW_TOKENS=str(args.sample_tokens),
                  TRAINER_EVAL_MAX_COST_RATIO="0")
    env_gw = dict(base_env, GATEWAY_PORT=str(ports["gateway"]),
                  GATEWAY_EXPORTER_ADDRESS=f"127.0.0.1:{ports['exporter']}",
                  GATEWAY_TRAINER_ADDRESS=f"127.0.0.1:{ports['trainer']}", GATEWAY_RPC_TIMEOUT_SECONDS="60")
    (work / "data").mkdir(exist_ok=True)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    print(f"machine: {machine()}; load average {load0[0]:.1f}; trainer pinned to "
          f"{'all CPUs' if cpus is None else f'CPU(s) {sorted(cpus)}'}", flush=True)
    services = [ServiceProcess("exporter", env_exp, work / "exporter.log"),
                ServiceProcess("trainer", env_tr, work / "trainer.log", cpus=cpus),
                ServiceProcess("gateway", env_gw, work / "gateway.log")]
    results = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['gateway']}", timeout=60) as api:
            wait_healthy(api, services)
            common = {"vertical": args.vertical, "base_model": args.model}
            config = {"lora_r": args.lora_r, "lora_alpha": 2 * args.lora_r, "num_epochs": 1,
                      "max_seq_length": args.max_seq_length, "quantization": "none",
                      "gradient_checkpointing": False, "checkpoint_every_steps": 1000}
            jobs = {
                "SFT": {**common, "name": "quality-bench-sft", "training_config": {
                    **config, "method": "sft", "batch_size": args.sft_batch, "learning_rate": args.sft_lr,
                    "max_steps": args.sft_steps}},
                "DPO": {**common, "name": "quality-bench-dpo", "training_config": {
                    **config, "method": "dpo", "batch_size": args.dpo_batch, "learning_rate": args.dpo_lr,
                    "max_steps": args.dpo_steps, "beta": args.beta}},
            }
            for label in [m.strip().upper() for m in args.methods.split(",") if m.strip()]:
                results.append(run_job(api, label, jobs[label]))
    finally:
        for s in reversed(services):
            s.stop()
    load1 = os.getloadavg()
    total = time.monotonic() - t0

    print()
    print(table(results))
    print()
    for res in results:
        for s in res["samples"][:1]:
            print(f"{res['label']} sample ({s['vertical']}, {s['debate_id']}): {s['prompt'][:150]}")
            print(f"  base:    {s['base'][:300]!r}")
            print(f"  adapter: {s['adapter'][:300]!r}")
    print(f"\ntotal {total / 60:.1f} min; load average {load0[0]:.1f} at start, {load1[0]:.1f} at end "
          f"(1-min), {load1[2]:.1f} (15-min)")
    summary = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
               "load_average_start": load0, "load_average_end": load1, "total_seconds": round(total, 1),
               "results": results}
    (work / "results.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    print(f"results: {work / 'results.json'}")
    if args.workdir is None:
        keep = work.parent / "quality-bench-last-results.json"
        shutil.copy(work / "results.json", keep)
        shutil.rmtree(work, ignore_errors=True)
        print(f"(work folder removed; results copied to {keep})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
