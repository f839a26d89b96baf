"""Many watchers and REST clients while jobs train: no errors, no event missing or out of order, and the
request latency, against a baseline in the same run.

    .venv/bin/python benchmarks/load_watchers.py                       # 50 SSE watchers, 20 REST clients, 2 jobs
    .venv/bin/python benchmarks/load_watchers.py --watchers 100 --clients 40 --steps 300

1. Starts the trainer and the gateway as separate processes (as ``make up`` does), loopback only, on a fresh
   temporary folder with the tiny random test Llama and a small dataset.
2. Baseline: the REST clients alone hammer list/get/counts for ``--baseline-seconds`` (nothing training, no
   watchers).
3. Load: two jobs train (``--steps`` optimizer steps each) while ``--watchers`` SSE watchers follow them
   through the gateway (half connect before the start, half at random moments during training, so replay and
   live delivery both run; a watcher whose stream drops reconnects with ``Last-Event-ID``) and the REST
   clients keep hammering until both jobs end.
4. Checks every watcher's events against the job's full log: missing, repeated and out-of-order events must
   all be 0, as must errors (a non-2xx answer or a failed request). Prints request latency percentiles for
   both phases and the SSE delivery delay (event time to arrival).

Exit status 0 when everything is clean, 1 otherwise (2 when it could not run within ``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.net import free_port
from tests.support.services import ServiceProcess, http_ready

TINY = "test/tiny-llama"


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    v = sorted(values)

    def at(q: float) -> float:
        return v[min(len(v) - 1, int(q * len(v)))] * 1000

    return (f"p50 {at(0.50):7.1f} ms  p90 {at(0.90):7.1f} ms  p99 {at(0.99):7.1f} ms  max {v[-1] * 1000:7.1f} ms"
            f"  (n={len(v)})")


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []


async def rest_client(client: httpx.AsyncClient, job_ids: list[str], stats: Stats, stop: asyncio.Event) -> None:
    rng = random.Random()
    while not stop.is_set():
        pick = rng.random()
        if pick < 0.4 or not job_ids:
            url = "/api/training/jobs"
        elif pick < 0.8:
            url = f"/api/training/jobs/{rng.choice(job_ids)}"
        else:
            url = "/api/training/jobs/counts"
        t0 = time.perf_counter()
        try:
            r = await client.get(url)
            stats.latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                stats.errors.append(f"GET {url}: {r.status_code} {r.text[:200]}")
        except httpx.HTTPError as exc:
            stats.errors.append(f"GET {url}: {type(exc).__name__}: {exc}")


class Watcher:
    """One browser-like SSE follower of a job (reconnects with Last-Event-ID)."""

    def __init__(self, base_url: str, job_id: str) -> None:
        self.base_url, self.job_id = base_url, job_id
        self.ids: list[int] = []
        self.delays: list[float] = []
        self.errors: list[str] = []
        self.connects = 0
        self.ended = False

    async def run(self, client: httpx.AsyncClient, delay: float) -> None:
        await asyncio.sleep(delay)
        url = f"{self.base_url}/api/training/jobs/{self.job_id}/events"
        while not self.ended:
            headers = {"Last-Event-ID": str(self.ids[-1])} if self.ids else {}
            try:
                async with client.stream("GET", url, headers=headers) as r:
                    self.connects += 1
                    if r.status_code != 200:
                        self.errors.append(f"SSE {r.status_code}: {(await r.aread())[:200]!r}")
                        await asyncio.sleep(0.5)
                        continue
                    buffer = ""
                    async for chunk in r.aiter_text():
                        buffer += chunk
                        while "\n\n" in buffer:
                            frame, buffer = buffer.split("\n\n", 1)
                            self._frame(frame)
                            if self.ended:
                                return
            except httpx.HTTPError as exc:
                self.errors.append(f"SSE {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    def _frame(self, frame: str) -> None:
        fields = {}
        for line in frame.splitlines():
            if line.startswith(":") or not line:
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields.get("event") == "end":
            self.ended = True
        elif "id" in fields:
            self.ids.append(int(fields["id"]))
            sent = json.loads(fields["data"])["time"]
            self.delays.append(max(0.0, time.time() - datetime.fromisoformat(sent.replace("Z", "+00:00")).timestamp()))


async def main_async(args, root: Path) -> int:
    from tests.support.tiny_model import build_tiny_model

    models = root / "models"
    build_tiny_model(models, TINY)
    data = root / "data" / "sft"
    data.mkdir(parents=True)
    words = "the court ruled that the contract clause was void because the party lacked notice".split()
    with open(data / "train.jsonl", "w") as fh:
        for i in range(2 * args.steps):
            fh.write(json.dumps({"instruction": "Answer with the consensus.",
                                 "input": f"Question {i}: {words[i % 14]}?",
                                 "output": " ".join(words[(i + k) % 14] for k in range(8)) + ".",
                                 "metadata": {"debate_id": f"d{i}"}}) + "\n")
    trainer_port, gateway_port, exporter_port = free_port(), free_port(), free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false",
               TRAINER_PORT=str(trainer_port), TRAINER_DATABASE_URL=f"sqlite:///{root}/trainer/jobs.db",
               TRAINER_JOBS_DIR=str(root / "jobs"), TRAINER_MODELS_DIR=str(models),
               TRAINER_DATA_ROOT=str(root / "data"),
               TRAINER_MAX_CONCURRENT_JOBS="2", TRAINER_LOG_LEVEL="WARNING", TRAINER_GRACE_SECONDS="1",
               GATEWAY_PORT=str(gateway_port), GATEWAY_TRAINER_ADDRESS=f"127.0.0.1:{trainer_port}",
               GATEWAY_EXPORTER_ADDRESS=f"127.0.0.1:{exporter_port}", GATEWAY_LOG_LEVEL="WARNING",
               EXPORTER_PORT=str(exporter_port), EXPORTER_DATABASE_URL=f"sqlite:///{root}/exporter/debates.db",
               EXPORTER_EXPORT_DIR=str(root / "exports"), EXPORTER_LOAD_SAMPLES="false", EXPORTER_LOG_LEVEL="WARNING")
    procs = [ServiceProcess(n, env, root / f"{n}.log") for n in ("exporter", "trainer", "gateway")]
    base_url = f"http://127.0.0.1:{gateway_port}"
    try:
        await http_ready(procs[2], base_url, timeout=120, ok=lambda r: r.status_code == 200)
        limits = httpx.Limits(max_connections=args.clients + 10, max_keepalive_connections=args.clients + 10)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as rest:
            # -- baseline: REST alone -----------------------------------------------------------------------
            baseline = Stats()
            stop = asyncio.Event()
            tasks = [asyncio.create_task(rest_client(rest, [], baseline, stop)) for _ in range(args.clients)]
            await asyncio.sleep(args.baseline_seconds)
            stop.set()
            await asyncio.gather(*tasks)

            # -- load: two jobs training, watchers, REST -----------------------------------------------------
            job_ids = []
            for n in range(args.jobs):
                r = await rest.post("/api/training/jobs", json={
                    "name": f"load-{n}", "base_model": TINY, "training_config": {
                        "dataset_path": "sft/train.jsonl", "quantization": "none", "num_epochs": 1, "batch_size": 2,
                        "max_steps": args.steps, "max_seq_length": 64, "lora_r": 4, "gradient_checkpointing": False,
                        "checkpoint_every_steps": 25}})
                r.raise_for_status()
                job_ids.append(r.json()["id"])
            sse_limits = httpx.Limits(max_connections=args.watchers + 10, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10), limits=sse_limits) as sse:
                watchers = [Watcher(base_url, job_ids[i % len(job_ids)]) for i in range(args.watchers)]
                early = args.watchers // 2
                rng = random.Random(1)
                watch_tasks = [asyncio.create_task(w.run(sse, 0 if i < early else rng.uniform(5, args.late_join)))
                               for i, w in enumerate(watchers)]
                await asyncio.sleep(1.0)
                load = Stats()
                stop = asyncio.Event()
                t0 = time.monotonic()
                for job_id in job_ids:
                    (await rest.post(f"/api/training/jobs/{job_id}/start")).raise_for_status()
                tasks = [asyncio.create_task(rest_client(rest, job_ids, load, stop)) for _ in range(args.clients)]
                await asyncio.gather(*watch_tasks)
                stop.set()
                await asyncio.gather(*tasks)
                elapsed = time.monotonic() - t0

            # -- the truth: each job's whole log, from the start ------------------------------------------------
            truth = {}
            for job_id in job_ids:
                truth_watcher = Watcher(base_url, job_id)
                async with httpx.AsyncClient(timeout=60) as one:
                    await truth_watcher.run(one, 0)
                truth[job_id] = truth_watcher.ids
            finals = [(await rest.get(f"/api/training/jobs/{j}")).json() for j in job_ids]
    finally:
        for p in reversed(procs):
            p.stop(timeout=20)

    missing = repeated = disorder = 0
    for w in watchers:
        expected = truth[w.job_id]
        got = w.ids
        # A late watcher without Last-Event-ID replays from the start: it must see the whole log too.
        missing += len(set(expected) - set(got))
        repeated += len(got) - len(set(got))
        disorder += sum(1 for a, b in zip(got, got[1:]) if b <= a)
    watcher_errors = [e for w in watchers for e in w.errors]
    errors = load.errors + baseline.errors + watcher_errors
    # The watchers there before the start receive every event but the first ("created") live.
    live_delays = [d for w in watchers[: args.watchers // 2] for i, d in zip(w.ids, w.delays) if i > 1]

    print(f"services: trainer + gateway processes on loopback; {os.cpu_count()} CPUs")
    print(f"jobs: {args.jobs} x {args.steps} steps, final status {[f['status'] for f in finals]}, "
          f"events per job {[len(truth[j]) for j in job_ids]}, training phase {elapsed:.1f} s")
    print(f"watchers: {args.watchers} SSE ({args.watchers // 2} from the start, the rest joining within "
          f"{args.late_join:g} s), {sum(w.connects for w in watchers)} connections")
    print(f"REST clients: {args.clients} hammering list/get/counts")
    baseline_rate = len(baseline.latencies) / args.baseline_seconds
    print(f"  baseline (idle)  {percentiles(baseline.latencies)}  {baseline_rate:6.0f} req/s")
    print(f"  under load       {percentiles(load.latencies)}  {len(load.latencies) / elapsed:6.0f} req/s")
    print(f"SSE delivery delay (event time -> watcher), live watchers: {percentiles(live_delays)}")
    print(f"errors: {len(errors)}" + "".join(f"\n  {e}" for e in errors[:10]))
    print(f"events missing: {missing}  repeated: {repeated}  out of order: {disorder}")
    clean = not errors and not (missing or repeated or disorder) and all(f["status"] == "completed" for f in finals)
    print("RESULT:", "clean" if clean else "NOT CLEAN")
    return 0 if clean else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per job")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--late-join", type=float, default=30.0, help="late watchers join within this many seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="load-watchers-"))
    try:
        return asyncio.run(asyncio.wait_for(main_async(args, root), args.timeout))
    except TimeoutError:
        print(f"RESULT: did not finish within {args.timeout:g} s (logs in {root})")
        return 2
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
