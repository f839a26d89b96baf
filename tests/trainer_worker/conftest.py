"""Fixtures of the worker's tests: the tiny random Llama (built once per session), SFT data, job folders and a
helper that runs ``python -m services.trainer.worker`` as a real subprocess and collects its events."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.services import ServiceProcess, base_env, exporter_env, wait_grpc
from tests.support.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
WORDS = ("the contract court clause liability party agreement statute appeal judge risk evidence claim "
         "patient dose code test market answer reason because therefore however").split()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models"))


def sft_records(n: int, seed: int = 0, vertical: str = "legal", max_words: int = 30) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, max_words)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, max_words)))
        out.append({"instruction": "Answer the question the debate settled.", "input": q + "?", "output": a + ".",
                    "metadata": {"debate_id": f"debate-{i // 2:03d}", "consensus_confidence": 0.8, "rounds": 2,
                                 "vertical": vertical}})
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def make_job(root: Path, job_id: str, model_path: Path, config: dict, *, data_root: Path | None = None,
             exporter_address: str = "127.0.0.1:1", vertical: str = "legal", checkpoint_every_steps: int = 50,
             resume: bool = False, **extra) -> Path:
    """A job folder as the service writes it: job.json with the validated spec (every default filled in)."""
    from services.trainer.models import resolve_model
    from services.trainer.spec import validate_spec

    data_root = data_root or root / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    model = resolve_model(model_path.parent, model_path.name.replace("--", "/", 1))
    spec = validate_spec(config, model, data_root)
    job_dir = root / "jobs" / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    job = {"job_id": job_id, "name": job_id, "vertical": vertical, "base_model": model.id,
           "model_path": str(model.path), "training_config": spec.model_dump(mode="json"),
           "exporter_address": exporter_address, "data_root": str(data_root),
           "checkpoint_every_steps": checkpoint_every_steps, "resume": resume, **extra}
    (job_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    return job_dir


def set_resume(job_dir: Path, resume: bool = True) -> None:
    job = json.loads((job_dir / "job.json").read_text())
    job["resume"] = resume
    (job_dir / "job.json").write_text(json.dumps(job))


class Worker:
    """``python -m services.trainer.worker JOB_DIR`` as the service runs it: own session, events on stdout
    (parsed line by line, every line must be a JSON object), stderr into ``worker.log``."""

    def __init__(self, job_dir: Path, env: dict | None = None) -> None:
        self.job_dir = job_dir
        self.events: list[dict] = []
        self.arrivals: list[float] = []  # time.monotonic() when each event was read, in step with events
        self.bad_lines: list[str] = []
        self._cond = threading.Condition()
        log = open(job_dir / "worker.log", "ab")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "services.trainer.worker", str(job_dir)], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        log.close()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode().rstrip("\n")
            try:
                obj = json.loads(line)
                assert isinstance(obj, dict)
            except (ValueError, AssertionError):
                self.bad_lines.append(line)
                continue
            with self._cond:
                self.events.append(obj)
                self.arrivals.append(time.monotonic())
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 120) -> dict:
        """The first event matching ``predicate`` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no such event; got {[e['type'] for e in self.events]}\n{self.log()}")
                self._cond.wait(min(left, 0.2))

    def terminate(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def log(self) -> str:
        text = (self.job_dir / "worker.log").read_text(errors="replace")
        return "\n".join(line for line in text.splitlines() if not line.startswith("event:"))[-3000:]

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


def run_worker(job_dir: Path, timeout: float = 300, env: dict | None = None) -> tuple[int, Worker]:
    w = Worker(job_dir, env)
    return w.wait(timeout), w


class ExporterProcess:
    """The real exporter service (``python -m services.exporter``) on a fresh SQLite file, in its own process,
    so worker subprocesses and the test's blocking waits never share an event loop with it."""

    def __init__(self, root: Path) -> None:
        import grpc

        port = free_port()
        self.address = f"127.0.0.1:{port}"
        env = base_env(**exporter_env(root, port, database_url=f"sqlite:///{root}/exporter.db"))
        self.service = ServiceProcess("exporter", env, root / "exporter.log")
        self.log = self.service.log
        self.channel = grpc.insecure_channel(self.address)
        try:
            wait_grpc(self.service, self.address, timeout=60)
        except AssertionError:
            self.close()
            raise

    def stub(self):
        from aragora.training.v1 import exporter_pb2_grpc

        return exporter_pb2_grpc.ExporterServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.service.stop(timeout=10)


def debate(i: int, vertical: str, confidence: float) -> dict:
    """One debate import record whose consensus confidence is ``confidence``."""
    agents = ("alpha", "beta", "gamma")
    return {
        "type": "debate", "id": f"{vertical}-{i:03d}", "vertical": vertical,
        "task": f"Is clause {i} of the {vertical} agreement enforceable when the party appeals?",
        "created_at": "2024-05-01T12:00:00Z",
        "rounds": [{"number": 1, "proposals": [{"agent": a, "content": f"{a} says clause {i} holds"} for a in agents]}],
        "critiques": [],
        "votes": [{"agent": a, "choice": "alpha", "confidence": 0.9} for a in agents],
        "consensus": {"reached": True, "winner": "alpha", "confidence": confidence, "dissenting_views": [],
                      "final_answer": f"Clause {i} is enforceable because the court upheld the statute."},
    }
