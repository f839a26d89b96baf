"""Inference speed: time to first token and decode tokens/s, base model vs adapter, served by the trainer's
InferenceService over gRPC, against plain ``transformers`` ``generate`` in the same run as the floor, and
optionally llama.cpp on the GGUF the product exports from the same adapter.

    .venv/bin/python -m services.trainer provision          # once: SmolLM2-135M-Instruct into var/models
    .venv/bin/python benchmarks/inference_bench.py           # 64 new tokens, 8 concurrent streams, 2 threads
    .venv/bin/python benchmarks/inference_bench.py --llamacpp-python /work/llamavenv/bin/python   # + llama.cpp

1. Makes a LoRA adapter for the model (r=16 on every linear layer of every block, lora_B filled with small
   random values, so the adapter is real work and changes the answers) and registers it as a completed job in
   a fresh trainer database (the job store's own methods), as a finished training job leaves it.
2. Starts the trainer as its own process (``python -m services.trainer``) with
   ``TRAINER_INFERENCE_THREADS=--threads`` and runs ``--repeats`` rounds (after a warm-up), each of: the floor,
   plain ``model.generate`` of the same base model in this process (greedy, same prompt, same threads; the
   trainer is idle meanwhile); a Generate stream over gRPC for the base model and one for the job's adapter
   (greedy, same prompt), twice each in the order base, adapter, adapter, base; and ``--streams`` concurrent
   streams (half base, half adapter, sampled with different seeds), which the trainer decodes as one batch
   (continuous batching, per-row adapters: docs/inference.md). Interleaving the rows means that a machine
   shared with other work slows them alike; each row reports the median over the rounds.
3. With ``--llamacpp-python`` (a Python with ``llama-cpp-python``, in a venv of its own: it compiles llama.cpp
   at install time and is not a project requirement): after the rounds, the job is exported as GGUF by the
   product's own export process (``python -m services.trainer.model_export JOB_DIR gguf_f16``: merge, then
   GGUF) and ``benchmarks/llamacpp_decode.py`` times it in llama.cpp, single stream, the same prompt ids, the
   same threads.

Time to first token (TTFT) is from sending the request to the first text; decode tokens/s counts the tokens
after the first over the time after the first. Goals: adapter decode within 10% of base (the median over rounds
of each round's base / adapter decode ratio: a round's ABBA pairs cancel a drift in the machine's load);
single-stream base decode >= 0.9x the floor; the concurrent streams finish without error and their aggregate
tokens/s exceeds a single stream's (end to end: tokens over wall time, TTFT included, for both). Tokens per
CPU-second (the process's user + system time: the trainer's, this process's for the floor) is printed beside
the wall-clock figures, as it moves less with other work on the machine. Exit status 0 when all are met.

4. After the rounds (the trainer stopped): the model's forward alone, in this process, base and adapter
   decoding forwards alternating one by one, with the engine's lean LoRA forward and then with PEFT's own
   (``forward_cost``): what the adapter costs with no gRPC, sampling or text around it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "generated")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import grpc  # noqa: E402

from aragora.training.v1 import inference_pb2 as ipb  # noqa: E402
from aragora.training.v1 import inference_pb2_grpc  # noqa: E402
from services.trainer.models import DEFAULT_MODEL_ID as MODEL  # noqa: E402

PROMPT = ("Write a detailed, step by step explanation of how a court decides whether a contract clause is "
          "void, with examples, precedents and the arguments of both parties.")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_adapter(model_dir: Path, out: Path, r: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)


def completed_job(db_url: str, jobs_dir: Path, adapter: Path) -> str:
    """A completed job whose final adapter is ``adapter``, registered through the job store."""
    from services.common.db import Database, migrate
    from services.trainer.orm import JobStatus
    from services.trainer.server import MIGRATIONS
    from services.trainer.store import JobStore

    migrate(db_url, MIGRATIONS)
    db = Database(db_url)
    store = JobStore(db)
    job, _ = store.create(name="bench-adapter", vertical="legal", base_model=MODEL, training_config={})
    for status in (JobStatus.PREPARING, JobStatus.TRAINING, JobStatus.COMPLETED):
        store.transition(job.id, status, reason="inference benchmark")
    db.dispose()
    shutil.copytree(adapter, jobs_dir / job.id / "adapter")
    return job.id


def export_gguf(model_dir: Path, job_dir: Path, qtype: str) -> Path:
    """The job exported as GGUF by the product's export process (merged into the base first)."""
    import json

    (job_dir / "job.json").write_text(json.dumps({"job_id": job_dir.name, "name": "bench-adapter",
                                                  "base_model": MODEL, "model_path": str(model_dir)}))
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'generated'}")
    proc = subprocess.run([sys.executable, "-m", "services.trainer.model_export", str(job_dir), f"gguf_{qtype}"],
                          env=env, capture_output=True, text=True, timeout=1800)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next((x for x in lines if x["type"] == "result"), None)
    if proc.returncode or result is None:
        raise RuntimeError(f"GGUF export failed ({proc.returncode}): {lines[-1:] or proc.stderr[-500:]}")
    return job_dir / next(f for f in result["files"] if f.endswith(".gguf"))


def llamacpp(python: str, gguf: Path, ids: list[int], args) -> dict:
    """llama.cpp on ``gguf`` (``llamacpp_decode.py`` under ``python``), from the prompt ``ids`` the other rows
    decode."""
    import json

    proc = subprocess.run([python, str(REPO / "benchmarks" / "llamacpp_decode.py"), str(gguf), json.dumps(ids),
                           str(args.max_new_tokens), str(args.repeats), str(args.threads)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"llama.cpp run failed ({proc.returncode}): {proc.stderr[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def one_stream(stub, model: str, max_new: int, seed: int | None = None) -> dict:
    sampling = ipb.SamplingParams(max_new_tokens=max_new, temperature=0.0 if seed is None else 0.8)
    if seed is not None:
        sampling.seed = seed
    req = ipb.GenerateRequest(model=model, messages=[ipb.ChatMessage(role="user", content=PROMPT)],
                              sampling=sampling)
    t0 = time.perf_counter()
    first = None
    tokens_at_first = 0
    finished = None
    async for item in stub.Generate(req):
        kind = item.WhichOneof("item")
        if kind == "delta" and first is None:
            first, tokens_at_first = time.perf_counter(), item.delta.completion_tokens
        elif kind == "finished":
            finished = item.finished
    end = time.perf_counter()
    n = finished.completion_tokens
    decode = (n - tokens_at_first) / (end - first) if first is not None and end > first and n > tokens_at_first else 0.0
    return {"ttft": (first or end) - t0, "tokens": n, "decode": decode, "wall": end - t0}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Floor:
    """Plain ``transformers`` ``generate`` of the base model in this process (greedy, same prompt, threads)."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.ids = self.tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
        self.timed(4)  # warm-up

    def timed(self, n: int) -> tuple[float, int, float]:
        """(seconds, new tokens, CPU seconds) of one ``generate`` of at most ``n`` new tokens."""
        import torch

        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            out = self.model.generate(**self.ids, max_new_tokens=n, do_sample=False, pad_token_id=self.tok.eos_token_id)
        return time.perf_counter() - t0, out.shape[1] - self.ids["input_ids"].shape[1], time.process_time() - c0


async def concurrent(stub, job_id: str, args, pid: int) -> dict:
    """``--streams`` streams at once, half base, half adapter, sampled with different seeds."""
    t0, c0 = time.perf_counter(), cpu_seconds(pid)
    results = await asyncio.gather(
        *[one_stream(stub, MODEL if i % 2 == 0 else job_id, args.max_new_tokens, seed=i)
          for i in range(args.streams)], return_exceptions=True)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
    errors = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    tokens = sum(r["tokens"] for r in ok)
    return {"streams": args.streams, "errors": len(errors), "wall": wall, "tokens": tokens, "cpu": cpu,
            "aggregate": tokens / wall, "per_cpu": tokens / cpu if cpu else 0.0,
            "ttft": statistics.median(r["ttft"] for r in ok) if ok else 0.0,
            "first_error": repr(errors[0])[:300] if errors else ""}


async def rounds(address: str, job_id: str, args, pid: int, plain: Floor) -> dict:
    """``--repeats`` rounds of: the floor, the served base, the served adapter, the concurrent streams, one
    after the other, so that a machine shared with other work loads every row alike; medians over rounds."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for model in (MODEL, job_id):  # warm-up: loads the base, attaches the adapter
            await one_stream(stub, model, 4)
        runs: dict[str, list[dict]] = {"floor": [], "base": [], "adapter": [], "concurrent": []}
        adapter_rounds: list[float] = []
        for _ in range(args.repeats):
            first, _, _ = plain.timed(1)
            total, n, cpu = plain.timed(args.max_new_tokens)
            runs["floor"].append({"ttft": first, "decode": (n - 1) / max(total - first, 1e-9), "tokens": n,
                                  "cpu": cpu, "per_cpu": n / cpu, "e2e": n / total})
            paired: dict[str, list[float]] = {"base": [], "adapter": []}
            for label, model in (("base", MODEL), ("adapter", job_id), ("adapter", job_id), ("base", MODEL)):
                c0 = cpu_seconds(pid)
                r = await one_stream(stub, model, args.max_new_tokens)
                r["cpu"] = cpu_seconds(pid) - c0
                r["per_cpu"], r["e2e"] = r["tokens"] / max(r["cpu"], 1e-9), r["tokens"] / r["wall"]
                runs[label].append(r)
                paired[label].append(r["decode"])
            # base / adapter decode of this round, its two of each in ABBA order (drift within a round cancels)
            adapter_rounds.append(statistics.mean(paired["base"]) / statistics.mean(paired["adapter"]))
            runs["concurrent"].append(await concurrent(stub, job_id, args, pid))
    out = {}
    for label, rs in runs.items():
        out[label] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
    c = out["concurrent"]
    c["errors"] = sum(r["errors"] for r in runs["concurrent"])
    c["first_error"] = next((r["first_error"] for r in runs["concurrent"] if r["first_error"]), "")
    c["streams"] = args.streams
    c["rounds"] = [(r["aggregate"], statistics.mean(b["e2e"] for b in runs["base"][2 * i:2 * i + 2]))
                   for i, r in enumerate(runs["concurrent"])]
    out["adapter"]["rounds"] = adapter_rounds
    return out


def forward_cost(model_dir: Path, adapter: Path, prompt: list[int], args) -> dict:
    """The model's forward alone, base vs adapter: the trainer's ``Engine`` in this process (no gRPC, no
    sampling, no text), one decoding forward at a time alternating between a base and an adapter stream (each
    on its own KV cache, in ABBA order), ``--repeats`` x 40 forwards of each; the median forward of each. Then
    the same with PEFT's own LoRA forward instead of the engine's lean one (``inference/lora.py``)."""
    import torch

    from services.trainer.inference.engine import Engine
    from services.trainer.inference.planner import Target

    engine = Engine(memory_bytes=8 << 30, threads=args.threads)
    base = Target(base_model=MODEL, base_path=model_dir)
    tuned = Target(base_model=MODEL, base_path=model_dir, job_id="bench", adapter_path=adapter)
    loaded = engine.acquire(base)
    engine.release(engine.acquire(tuned))
    keys = (None, tuned.adapter_key)
    ids = torch.tensor([prompt])

    def measure() -> tuple[float, float]:
        state, times = {}, {k: [] for k in keys}

        def step(key, input_ids, cache):
            out = engine._forward(loaded, [key], input_ids=input_ids, past_key_values=cache, use_cache=True)
            state[key] = (out.logits[:, -1].argmax(-1, keepdim=True), out.past_key_values)

        for key in keys:
            step(key, ids, None)
        for i in range(args.repeats * 20):
            for key in (keys + keys[::-1]) if i % 2 == 0 else (keys[::-1] + keys):
                if state[key][1].get_seq_length() >= len(prompt) + args.max_new_tokens:
                    step(key, ids, None)  # back to the prompt: every forward sees the contexts a stream sees
                token, cache = state[key]
                t = time.perf_counter()
                step(key, token, cache)
                times[key].append(time.perf_counter() - t)
        return statistics.median(times[None]), statistics.median(times[tuned.adapter_key])

    lean = measure()
    select = loaded.lean.select
    loaded.lean.select = lambda rows, device: (loaded.lean.defer(), False)[1]  # PEFT's forward, switched once
    try:
        peft = measure()
    finally:
        loaded.lean.select = select
    engine.release(loaded)
    return {"base_ms": lean[0] * 1000, "adapter_ms": lean[1] * 1000, "cost": lean[1] / lean[0] - 1,
            "peft_base_ms": peft[0] * 1000, "peft_adapter_ms": peft[1] * 1000, "peft_cost": peft[1] / peft[0] - 1,
            "forwards": args.repeats * 40}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="torch threads (trainer's inference and the floor)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--llamacpp-python", default="",
                   help="a Python with llama-cpp-python: adds llama.cpp on the exported GGUF as a row")
    p.add_argument("--gguf", choices=("f16", "q8_0"), default="f16", help="the GGUF export llama.cpp runs")
    args = p.parse_args()
    for name in ("max_new_tokens", "repeats", "streams", "threads", "lora_r"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    model_dir = args.models_dir / MODEL.replace("/", "--")
    if not (model_dir / "config.json").is_file():
        p.error(f"{model_dir} is missing: run `.venv/bin/python -m services.trainer provision` first")

    work = Path(tempfile.mkdtemp(prefix="inference-bench-"))
    proc = None
    try:
        make_adapter(model_dir, work / "adapter", args.lora_r)
        db_url = f"sqlite:///{work}/trainer/jobs.db"
        (work / "trainer").mkdir()
        job_id = completed_job(db_url, work / "jobs", work / "adapter")
        port = free_port()
        env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'generated'}", TRAINER_PORT=str(port),
                   TRAINER_DATABASE_URL=db_url, TRAINER_JOBS_DIR=str(work / "jobs"),
                   TRAINER_MODELS_DIR=str(args.models_dir.absolute()), TRAINER_DATA_ROOT=str(work / "data"),
                   TRAINER_INFERENCE_THREADS=str(args.threads), TRAINER_LOG_LEVEL="WARNING")
        proc = subprocess.Popen([sys.executable, "-m", "services.trainer", "serve"], cwd=work, env=env)
        address = f"127.0.0.1:{port}"

        async def ready() -> None:
            async with grpc.aio.insecure_channel(address) as ch:
                await asyncio.wait_for(ch.channel_ready(), 60)

        asyncio.run(ready())
        plain = Floor(model_dir, args.threads)
        served = asyncio.run(rounds(address, job_id, args, proc.pid, plain))
        prompt_ids = plain.ids["input_ids"][0].tolist()
        del plain
        proc.terminate()
        proc.wait(30)
        proc = None
        forwards = forward_cost(model_dir, work / "adapter", prompt_ids, args)
        cpp = None
        if args.llamacpp_python:
            gguf = export_gguf(model_dir.absolute(), work / "jobs" / job_id, args.gguf)
            cpp = llamacpp(args.llamacpp_python, gguf, prompt_ids, args)
            cpp["file"], cpp["mb"] = gguf.name, gguf.stat().st_size / 1e6
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    f, b, a, c = served["floor"], served["base"], served["adapter"], served["concurrent"]
    # the median over rounds of each round's paired (ABBA) base / adapter decode ratio
    adapter_cost = statistics.median(a["rounds"]) - 1
    vs_floor = b["decode"] / f["decode"]
    single = b["e2e"]
    print(f"SmolLM2-135M-Instruct, CPU, {args.threads} threads, greedy, {args.max_new_tokens} new tokens max, "
          f"median of {args.repeats} interleaved rounds")
    print("| run | TTFT (ms) | decode tokens/s | tokens per CPU-second | tokens |")
    print("|---|---|---|---|---|")
    print(f"| plain transformers generate (floor) | {f['ttft'] * 1000:.0f} | {f['decode']:.1f} | "
          f"{f['per_cpu']:.1f} | {f['tokens']:.0f} |")
    print(f"| served base (gRPC stream) | {b['ttft'] * 1000:.0f} | {b['decode']:.1f} | {b['per_cpu']:.1f} | "
          f"{b['tokens']:.0f} |")
    print(f"| served adapter (gRPC stream) | {a['ttft'] * 1000:.0f} | {a['decode']:.1f} | {a['per_cpu']:.1f} | "
          f"{a['tokens']:.0f} |")
    print(f"| {c['streams']} concurrent streams (half adapter, batched) | {c['ttft'] * 1000:.0f} (median) | "
          f"{c['aggregate']:.1f} aggregate | {c['per_cpu']:.1f} | {c['tokens']:.0f} in {c['wall']:.1f} s, "
          f"{c['errors']} errors |")
    if cpp is not None:
        print(f"| llama.cpp {cpp['llama_cpp']}, adapter merged, {args.gguf} GGUF ({cpp['mb']:.0f} MB), after the "
              f"rounds | {cpp['ttft'] * 1000:.0f} | {cpp['decode']:.1f} | {cpp['per_cpu']:.1f} | {cpp['tokens']} |")
    print(f"ratios: served base / floor decode {vs_floor:.2f}x; "
          f"adapter cost over base (per round, ABBA pairs): "
          + ", ".join(f"{x - 1:+.1%}" for x in a["rounds"]) + "; "
          f"{c['streams']} streams aggregate / single stream end to end {c['aggregate'] / single:.2f}x "
          f"({c['aggregate']:.1f} vs {single:.1f} tokens/s; per round: "
          + ", ".join(f"{x / y:.2f}x" for x, y in c["rounds"]) + f"); per CPU-second {c['per_cpu'] / b['per_cpu']:.2f}x"
          + (f"; llama.cpp / floor decode {cpp['decode'] / f['decode']:.2f}x (not interleaved)" if cpp else ""))
    print(f"the model's forward alone (the engine in process, {forwards['forwards']} decoding forwards each, base "
          f"and adapter alternating, medians): base {forwards['base_ms']:.1f} ms, adapter {forwards['adapter_ms']:.1f}"
          f" ms per token: adapter cost {forwards['cost']:+.1%}; with PEFT's own LoRA forward "
          f"{forwards['peft_base_ms']:.1f} vs {forwards['peft_adapter_ms']:.1f} ms: {forwards['peft_cost']:+.1%}")
    goals = {
        f"adapter costs <= 10% over base ({adapter_cost:+.1%})": adapter_cost <= 0.10,
        f"single-stream decode >= 0.9x floor ({vs_floor:.2f}x)": vs_floor >= 0.9,
        f"{c['streams']} streams without error ({c['errors']} errors)": c["errors"] == 0,
        f"aggregate > single stream ({c['aggregate']:.1f} vs {single:.1f} tokens/s end to end)":
            c["aggregate"] > single,
    }
    for text, ok in goals.items():
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    if c["first_error"]:
        print("first error:", c["first_error"])
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
