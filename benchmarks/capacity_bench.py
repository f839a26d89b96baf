"""The control plane's capacity: many concurrent jobs against one trainer process on PostgreSQL, with watchers.

    .venv/bin/python benchmarks/capacity_bench.py                     # 100 jobs, the phases below (~6 minutes)
    .venv/bin/python benchmarks/capacity_bench.py --jobs 20 --phases 3x1:20,10x1:20
    .venv/bin/python benchmarks/capacity_bench.py --database-url postgresql+psycopg://user@host/db  # a server of yours

1. Starts a throwaway PostgreSQL cluster in a temporary folder (``initdb`` + ``pg_ctl``, as the ``postgres``
   user when run as root; fsync and synchronous commit on, the server's defaults), unless ``--database-url``.
2. Starts the real trainer (``python -m services.trainer``) on it with ``TRAINER_MAX_CONCURRENT_JOBS`` = the
   job count and ``ARAGORA_WORKER_MODULE=benchmarks.fake_worker``: every job's worker is a simulated one that
   writes the real worker's protocol lines on stdout (``benchmarks/fake_worker.py``), which the trainer reads,
   records (PostgreSQL + ``events.jsonl``) and publishes exactly as it does a real worker's.
3. Creates and starts ``--jobs`` jobs over gRPC and attaches ``WatchJob`` streams to every job.
4. Runs the phases, each ``RATExWATCHERS:SECONDS``: every job emits RATE step events per second (the fake
   workers read the rate from a shared file), WATCHERS streams per job follow them; after a warm-up, it
   measures for SECONDS: step events delivered per second, delivery latency to a watcher (the worker's write
   time, in the event, to the watcher's read) p50/p99/max, the trainer process's CPU (its own, not its
   workers'), PostgreSQL's commits, row inserts and updates per second and its CPU.
5. Prints a table, the capacity estimate (how many jobs one trainer holds at a CPU (0.32 step/s) and a GPU
   (3.3 step/s) job's rate) and what saturates first; ``--json FILE`` writes the figures.

Figures depend on the machine and on what else runs on it (the 100 fake workers, the watchers and PostgreSQL
share its cores with the trainer); docs/capacity.md has a run and the model behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "generated")]

from tests.support.net import free_port  # noqa: E402
from tests.support.services import ServiceProcess, base_env, trainer_env, wait_grpc  # noqa: E402

TINY = "test/tiny-llama"
CPU_STEP_RATE = 1 / 3.12   # product SFT, SmolLM2-135M, this CPU (docs/performance.md)
GPU_STEP_RATE = 1 / 0.30   # the same on one H100


# -- PostgreSQL --------------------------------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    raise SystemExit(f"capacity_bench: {name} not found; install PostgreSQL (apt-get install postgresql) or "
                     "pass --database-url")


class Postgres:
    """A throwaway cluster under ``root`` on a free loopback port."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.port = free_port()
        self.as_user: list[str] = []
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:  # initdb refuses to run as root
            import pwd

            user = pwd.getpwnam("postgres")
            os.chmod(root, 0o755)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(_pg_bin("initdb"), "-D", str(self.dir), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir), "-l", str(self.dir / "server.log"), "-o", opts, "-w",
                  "start")
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        subprocess.run([*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.dir), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=False)


def create_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


class DbStats:
    """Commits, inserted and updated rows of one database (``pg_stat_database``), and the server's CPU."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.name = make_url(url).database
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")

    def sample(self) -> dict:
        import psutil
        from sqlalchemy import text

        with self.engine.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = c.execute(text("SELECT xact_commit, tup_inserted, tup_updated, blks_hit + blks_read "
                                 "FROM pg_stat_database WHERE datname = :n"), {"n": self.name}).one()
        cpu = 0.0
        for p in psutil.process_iter(["name", "cpu_times"]):
            if p.info["name"] and p.info["name"].startswith("postgres") and p.info["cpu_times"]:
                cpu += p.info["cpu_times"].user + p.info["cpu_times"].system
        return {"commits": row[0], "inserted": row[1], "updated": row[2], "blocks": row[3], "cpu": cpu,
                "t": time.monotonic()}


# -- watchers ----------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    measuring: bool = False
    latencies: list[float] = field(default_factory=list)
    steps: int = 0
    errors: int = 0
    last_error: str = ""


async def watch(stub, job_id: str, tally: Tally, stop: asyncio.Event) -> None:
    import grpc

    from aragora.training.v1 import trainer_pb2 as pb

    last = 0
    while not stop.is_set():
        call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=last))
        try:
            async for item in call:
                if not item.HasField("event"):
                    continue
                ev = item.event
                last = ev.sequence
                if ev.type == pb.EVENT_TYPE_STEP and "emitted_at" in ev.step.extra:
                    if tally.measuring:
                        tally.latencies.append(time.time() - ev.step.extra["emitted_at"])
                        tally.steps += 1
                if stop.is_set():
                    break
            return
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 (a dropped stream: count it and follow on from the last event)
            tally.errors += 1
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
            tally.last_error = f"{code}: {detail}"[:300]
            await asyncio.sleep(0.5)


async def settle_down(tally: Tally, timeout: float) -> float | None:
    """Waits (up to ``timeout``) until events reach the watchers within a second of being written again (the
    backlog of the job starts or of the last phase worked off); the seconds it took, None if it never did."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        tally.latencies, tally.measuring = [], True
        await asyncio.sleep(3)
        tally.measuring = False
        if tally.latencies and pct(tally.latencies, 0.5) < 1.0:
            return round(time.monotonic() - t0, 1)
    return None


def write_path(url: str, n: int) -> dict:
    """The trainer's event write alone (``JobStore.append_event``: one transaction per event, as the store's
    writer thread runs it), ``n`` times on one thread against the benchmark's database: its wall time per
    event bounds the events per second one trainer can record."""
    from services.common.db import Database
    from services.trainer.events import EventType
    from services.trainer.store import JobStore

    store = JobStore(Database(url))
    job = store.create(name="write-path-probe", vertical="legal", base_model=TINY, training_config={})[0]
    payload = {"epoch": 0.1, "step": 1, "total_steps": 1000, "loss": 2.0, "learning_rate": 2e-4,
               "examples_seen": 4, "tokens_per_second": 900.0, "progress": 0.001, "extra": {"grad_norm": 0.5}}
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        store.append_event(job.id, EventType.STEP, f"step {i}", payload, current_step=i, loss=2.0)
    ms = (time.perf_counter() - t0) / n * 1000
    cpu_ms = (time.process_time() - c0) / n * 1000
    return {"events": n, "ms_per_event": round(ms, 2), "cpu_ms_per_event": round(cpu_ms, 2),
            "events_per_second": round(1000 / ms, 1)}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def trainer_cpu(pid: int) -> tuple[float, float]:
    """(the trainer process's own CPU seconds, its children's: the fake workers, live ones included)."""
    import psutil

    p = psutil.Process(pid)
    t = p.cpu_times()
    kids = 0.0
    for c in p.children(recursive=True):
        try:
            ct = c.cpu_times()
            kids += ct.user + ct.system
        except psutil.Error:
            pass
    return t.user + t.system, kids


# -- the run -----------------------------------------------------------------------------------------------------

def parse_phases(text: str) -> list[tuple[float, int, float]]:
    out = []
    for part in text.split(","):
        rate_watchers, seconds = part.split(":")
        rate, watchers = rate_watchers.split("x")
        out.append((float(rate), int(watchers), float(seconds)))
    return out


async def run(args) -> dict:
    import grpc

    from aragora.training.v1 import trainer_pb2 as pb
    from aragora.training.v1 import trainer_pb2_grpc

    root = Path(tempfile.mkdtemp(prefix="capacity-"))
    pg = None
    trainer = None
    try:
        if args.database_url:
            url = args.database_url
        else:
            pg = Postgres(root)
            url = create_database(pg.admin_url, "capacity")
        print(f"database: {url.split('@')[-1]}", flush=True)
        models = root / "models"
        folder = models / TINY.replace("/", "--")
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 512, "model_type": "llama"}))
        rate_file = root / "rate"
        rate_file.write_text(str(parse_phases(args.phases)[0][0]))
        port = free_port()
        env = base_env(**trainer_env(root, port, models, database_url=url, max_concurrent_jobs=args.jobs,
                                     checkpoint_every_steps=50, log_level="WARNING"),
                       ARAGORA_WORKER_MODULE="benchmarks.fake_worker", FAKE_WORKER_RATE_FILE=str(rate_file),
                       FAKE_WORKER_MAX_SECONDS=str(args.max_seconds),
                       PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "generated")]))
        trainer = ServiceProcess("trainer", env, root / "trainer.log")
        address = f"127.0.0.1:{port}"
        wait_grpc(trainer, address, timeout=120)
        db = DbStats(url)
        probe = write_path(url, args.probe_events)
        print(f"write path alone: {json.dumps(probe)}", flush=True)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            t0 = time.monotonic()
            gate = asyncio.Semaphore(8)  # clients creating jobs at once

            async def create_and_start(i: int) -> str:
                async with gate:
                    job = (await stub.CreateJob(pb.CreateJobRequest(
                        name=f"capacity-{i:03d}", vertical="legal", base_model=TINY,
                        training_config=pb.TrainingConfig(max_seq_length=128)), timeout=300)).job
                    await stub.StartJob(pb.StartJobRequest(job_id=job.id), timeout=300)
                    return job.id

            ids = list(await asyncio.gather(*(create_and_start(i) for i in range(args.jobs))))
            print(f"{args.jobs} jobs created and started in {time.monotonic() - t0:.1f} s", flush=True)
            # Every worker started and training (its first step event recorded).
            deadline = time.monotonic() + args.start_timeout
            while True:
                listed = (await stub.ListJobs(pb.ListJobsRequest(), timeout=60)).jobs
                training = sum(1 for j in listed if j.current_step > 0)
                if training == args.jobs:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {training} of {args.jobs} jobs training after {args.start_timeout} s; "
                                     f"see {root / 'trainer.log'}")
                await asyncio.sleep(1)
            print(f"all {args.jobs} workers training after {time.monotonic() - t0:.1f} s", flush=True)

            stop = asyncio.Event()
            tasks: list[asyncio.Task] = []
            tally = Tally()
            phases = []
            for rate, watchers, seconds in parse_phases(args.phases):
                rate_file.write_text(str(rate))
                while len(tasks) < watchers * len(ids):
                    job_id = ids[len(tasks) % len(ids)]
                    tasks.append(asyncio.create_task(watch(stub, job_id, tally, stop)))
                while len(tasks) > watchers * len(ids):  # fewer watchers than the last phase
                    tasks.pop().cancel()
                await asyncio.sleep(args.warmup)  # new rate everywhere, new watchers caught up
                settle = await settle_down(tally, args.settle_timeout)
                tally.latencies, tally.steps, errors0 = [], 0, tally.errors
                cpu0, kids0 = trainer_cpu(trainer.pid)
                me0 = sum(os.times()[:2])
                db0 = db.sample()
                tally.measuring = True
                await asyncio.sleep(seconds)
                tally.measuring = False
                db1 = db.sample()
                cpu1, kids1 = trainer_cpu(trainer.pid)
                me1 = sum(os.times()[:2])
                dt = db1["t"] - db0["t"]
                lat = tally.latencies
                delivered = tally.steps / seconds / watchers
                phase = {
                    "jobs": len(ids), "steps_per_second_per_job": rate, "watchers_per_job": watchers,
                    "seconds": seconds, "offered_events_per_second": round(rate * len(ids), 1),
                    "delivered_step_events_per_second": round(delivered, 1),
                    "latency_ms_p50": round(pct(lat, 0.5) * 1000, 1), "latency_ms_p99": round(pct(lat, 0.99) * 1000, 1),
                    "latency_ms_max": round(max(lat) * 1000, 1) if lat else None,
                    "trainer_cpu_percent": round(100 * (cpu1 - cpu0) / dt, 1),
                    "trainer_cpu_ms_per_event": round(1000 * (cpu1 - cpu0) / max(1.0, delivered * seconds), 3),
                    "fake_workers_cpu_percent": round(100 * (kids1 - kids0) / dt, 1),
                    "watcher_client_cpu_percent": round(100 * (me1 - me0) / dt, 1),
                    "load_average_1m": round(os.getloadavg()[0], 1),
                    "db_commits_per_second": round((db1["commits"] - db0["commits"]) / dt, 1),
                    "db_rows_inserted_per_second": round((db1["inserted"] - db0["inserted"]) / dt, 1),
                    "db_rows_updated_per_second": round((db1["updated"] - db0["updated"]) / dt, 1),
                    "db_cpu_percent": round(max(0.0, 100 * (db1["cpu"] - db0["cpu"]) / dt), 1),  # live backends
                    "stream_errors": tally.errors - errors0,
                    "settle_seconds": settle,
                    "last_stream_error": tally.last_error,
                }
                phases.append(phase)
                print(json.dumps(phase), flush=True)
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"phases": phases, "write_path": probe, "machine": machine()}
    finally:
        if trainer is not None:
            # Stopping the trainer stops its workers (each in its own session); any left are ended here.
            import psutil

            try:
                workers = psutil.Process(trainer.pid).children()
            except psutil.Error:
                workers = []
            trainer.stop(signal.SIGTERM, timeout=30)
            trainer.kill_group()
            for w in workers:
                try:
                    w.kill()
                except psutil.Error:
                    pass
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


def machine() -> dict:
    import psutil

    return {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def report(result: dict) -> None:
    phases = result["phases"]
    cols = [("rate/job", "steps_per_second_per_job"), ("watchers/job", "watchers_per_job"),
            ("offered ev/s", "offered_events_per_second"), ("delivered ev/s", "delivered_step_events_per_second"),
            ("p50 ms", "latency_ms_p50"), ("p99 ms", "latency_ms_p99"), ("max ms", "latency_ms_max"),
            ("trainer CPU %", "trainer_cpu_percent"), ("trainer CPU ms/event", "trainer_cpu_ms_per_event"),
            ("DB commits/s", "db_commits_per_second"), ("DB inserts/s", "db_rows_inserted_per_second"),
            ("DB updates/s", "db_rows_updated_per_second"), ("DB CPU %", "db_cpu_percent"),
            ("watchers' CPU %", "watcher_client_cpu_percent"), ("load", "load_average_1m")]
    print()
    print("| " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "---:|" * len(cols))
    for p in phases:
        print("| " + " | ".join(str(p[k]) for _, k in cols) + " |")
    print(f"\nmachine: {result['machine']}")
    probe = result["write_path"]
    print(f"write path alone (JobStore.append_event on one thread): {probe['ms_per_event']} ms per event "
          f"({probe.get('cpu_ms_per_event', '?')} ms of it on the CPU), {probe['events_per_second']} events/s")
    # The model's figures from the phases: the trainer's CPU that does not depend on the event rate (per job),
    # the marginal CPU per event and per event and watcher, and the highest rate it kept up with.
    jobs = phases[0]["jobs"]
    one = sorted((p for p in phases if p["watchers_per_job"] == 1), key=lambda p: p["offered_events_per_second"])
    fixed = marginal = fanout = None
    if one:
        fixed = one[0]["trainer_cpu_percent"] / jobs
        print(f"\ntrainer CPU at {one[0]['offered_events_per_second']:g} events/s: {one[0]['trainer_cpu_percent']:g}% "
              f"({fixed:.2f}% per job, whatever its rate: the supervisor's memory sampling, the idle streams)")
    if len(one) >= 2:
        a, b = one[0], one[-1]
        d_ev = b["delivered_step_events_per_second"] - a["delivered_step_events_per_second"]
        if d_ev > 0:
            marginal = 10 * (b["trainer_cpu_percent"] - a["trainer_cpu_percent"]) / d_ev
            print(f"marginal trainer CPU per event (1 watcher): {marginal:.2f} ms")
    multi = [p for p in phases if p["watchers_per_job"] > 1]
    for m in multi:
        base = [p for p in one if p["steps_per_second_per_job"] == m["steps_per_second_per_job"]]
        if base and m["delivered_step_events_per_second"] > 0:
            extra_w = m["watchers_per_job"] - 1
            fanout = 10 * (m["trainer_cpu_percent"] - base[0]["trainer_cpu_percent"]) / (
                m["delivered_step_events_per_second"] * extra_w)
            print(f"watcher fan-out: {fanout:.2f} ms of trainer CPU per event per extra watcher "
                  f"({m['watchers_per_job']} vs 1 watcher per job)")
    ok = [p for p in phases if p["settle_seconds"] is not None and p["latency_ms_p99"] < 2000
          and p["delivered_step_events_per_second"] >= p["offered_events_per_second"]
          - max(1.0, 0.05 * p["offered_events_per_second"])]
    late = [p for p in phases if p not in ok]
    if ok:
        best = max(ok, key=lambda p: p["offered_events_per_second"])
        print(f"kept up (p99 < 2 s, nothing left behind) up to {best['offered_events_per_second']:g} events/s "
              f"({best['steps_per_second_per_job']:g} per job, {best['watchers_per_job']} watcher(s) per job)")
    if late:
        worst = min(late, key=lambda p: p["offered_events_per_second"])
        print(f"fell behind from {worst['offered_events_per_second']:g} offered events/s "
              f"(delivered {worst['delivered_step_events_per_second']:g}/s, p99 {worst['latency_ms_p99']:g} ms)")
    ceiling = probe["events_per_second"]
    print(f"\njobs one trainer holds (the write path's {ceiling:g} events/s at 70%, one watcher each):")
    for label, rate in (("GPU", GPU_STEP_RATE), ("CPU", CPU_STEP_RATE)):
        line = f"  {label} jobs ({rate:.2f} steps/s): {0.7 * ceiling / rate:.0f} by the write path"
        if fixed and marginal:
            cpu_jobs = 70 / (fixed + rate * marginal / 10)
            line += f", {cpu_jobs:.0f} by the trainer's CPU (one core at 70%)"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--phases", default="0.02x1:30,0.32x1:30,0.32x4:30,1x1:30,3.3x1:30",
                        help="RATExWATCHERS:SECONDS,...: step events per second per job, watchers per job, "
                             "measured seconds (default: near idle, a CPU job's 0.32 step/s with 1 and 4 "
                             "watchers per job, 1/s, and a small model's GPU rate, 3.3/s)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before each phase's measurement")
    parser.add_argument("--settle-timeout", type=float, default=60.0,
                        help="the longest wait for a backlog to clear before a phase is measured anyway")
    parser.add_argument("--probe-events", type=int, default=300, help="events of the write-path probe")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="a fake worker's longest run")
    parser.add_argument("--database-url", help="an existing PostgreSQL database (SQLAlchemy URL) instead of a "
                                               "throwaway cluster")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, events.jsonl)")
    args = parser.parse_args()
    # A SIGTERM (timeout, Ctrl-C's cousin) unwinds like SIGINT, so the trainer, its workers and PostgreSQL stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
