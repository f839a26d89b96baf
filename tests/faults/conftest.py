"""Fixtures of the fault tests: the real services as separate OS processes (so SIGKILL, SIGTERM and restarts are
real), followers that reconnect the way the CLI and a browser do, and the tiny random Llama built once.

Every process a test starts is in its own session and is killed (its whole process group, workers included)
when the test module ends, whatever happened."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from tests.support import services
from tests.support.services import ServiceProcess, base_env
from tests.trainer.conftest import DATASET, TINY, sft_records

_ROOTS: set[str] = set()


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models folder holding the tiny random Llama (built once per session)."""
    from tests.support.tiny_model import build_tiny_model

    models_dir = tmp_path_factory.mktemp("fault-models")
    build_tiny_model(models_dir, TINY)
    return models_dir


def write_dataset(data_root: Path, name: str = DATASET, n: int = 24) -> Path:
    path = data_root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in sft_records(n)), encoding="utf-8")
    return path


def worker_pids(trainer: ServiceProcess) -> dict[str, int]:
    """The trainer's worker processes by job id (workers are its children, each in its own session)."""
    import psutil

    out = {}
    try:
        children = psutil.Process(trainer.pid).children()
    except psutil.Error:
        return out
    for child in children:
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "services.trainer.worker" in cmd:
            out[Path(cmd[-1]).name] = child.pid
    return out


def trainer_env(root: Path, port: int, models_dir: Path, exporter_address: str = "127.0.0.1:1", **settings) -> dict:
    return base_env(**services.trainer_env(root, port, models_dir, exporter_address, **{"log_level": "INFO",
                                                                                         **settings}))


def start_trainer(root: Path, port: int, models_dir: Path, *, prefix: list[str] | None = None, label: str = "trainer",
                  **settings) -> ServiceProcess:
    """``python -m services.trainer`` on ``port`` with its files under ``root`` (``prefix``: a command that
    execs it, e.g. one that sets a resource limit first)."""
    env = trainer_env(root, port, models_dir, **settings)
    _ROOTS.add(str(Path(env["TRAINER_JOBS_DIR"]).absolute()))
    argv = [*(prefix or []), sys.executable, "-m", "services.trainer"]
    return ServiceProcess(label, env, root / f"{label}.log", argv=argv)


def start_gateway(root: Path, port: int, trainer_address: str, exporter_address: str = "127.0.0.1:1",
                  label: str = "gateway", **settings) -> ServiceProcess:
    env = base_env(**services.gateway_env(port, trainer_address, exporter_address, **{"log_level": "WARNING",
                                                                                       **settings}))
    return ServiceProcess(label, env, root / f"{label}.log", argv=[sys.executable, "-m", "services.gateway"])


class Follower:
    """Follows one job's WatchJob like the CLI does: after any error it reconnects with the last sequence it
    saw, until it has seen the job's terminal status event. ``events`` is everything it received, in order."""

    def __init__(self, address: str, job_id: str) -> None:
        self.address, self.job_id = address, job_id
        self.events: list[pb.JobEvent] = []
        self.connects = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def last(self) -> int:
        return self.events[-1].sequence if self.events else 0

    async def _run(self) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(self.address) as channel:
                    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
                    self.connects += 1
                    async for item in stub.WatchJob(pb.WatchJobRequest(job_id=self.job_id, after_sequence=self.last)):
                        if item.WhichOneof("item") == "event":
                            self.events.append(item.event)
                if self.events and is_terminal(self.events[-1]):
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)

    def seen(self, predicate) -> pb.JobEvent | None:
        return next((e for e in reversed(self.events) if predicate(e)), None)


class SSEFollower:
    """Follows ``/api/training/jobs/{id}/events`` like a browser's EventSource: on a dropped stream, a refused
    connection or an HTTP error it retries, sending ``Last-Event-ID``, until it receives ``end``."""

    def __init__(self, base_url: str, job_id: str, headers: dict | None = None) -> None:
        self.base_url, self.job_id, self.headers = base_url, job_id, headers or {}
        self.frames: list[dict] = []
        self.statuses: list[int | str] = []  # each attempt's HTTP status, or the connection error's name
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def last_id(self) -> int | None:
        ids = [f["id"] for f in self.frames if f["id"] is not None]
        return ids[-1] if ids else None

    @property
    def events(self) -> list[dict]:
        return [f for f in self.frames if f["id"] is not None]

    async def _run(self) -> None:
        url = f"{self.base_url}/api/training/jobs/{self.job_id}/events"
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=3.0)) as client:
            while True:
                headers = dict(self.headers)
                if self.last_id is not None:
                    headers["Last-Event-ID"] = str(self.last_id)
                try:
                    async with client.stream("GET", url, headers=headers) as r:
                        self.statuses.append(r.status_code)
                        if r.status_code == 200:
                            buffer = ""
                            async for chunk in r.aiter_text():
                                buffer += chunk
                                while "\n\n" in buffer:
                                    raw, buffer = buffer.split("\n\n", 1)
                                    frame = parse_frame(raw)
                                    if frame is not None:
                                        self.frames.append(frame)
                                        if frame["event"] == "end":
                                            return
                        else:
                            await r.aread()
                except httpx.HTTPError as exc:
                    self.statuses.append(type(exc).__name__)
                await asyncio.sleep(0.3)


def parse_frame(raw: str) -> dict | None:
    lines = [ln for ln in raw.splitlines() if ln and not ln.startswith(":") and not ln.startswith("retry:")]
    if not lines:
        return None
    frame = {"id": None, "event": "message", "data": None}
    for ln in lines:
        key, _, value = ln.partition(": ")
        if key == "id":
            frame["id"] = int(value)
        elif key == "event":
            frame["event"] = value
        elif key == "data":
            frame["data"] = json.loads(value)
    return frame


def is_terminal(e: pb.JobEvent) -> bool:
    return e.WhichOneof("payload") == "status_change" and e.status_change.to_status in (
        pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED)


def statuses(events) -> list[int]:
    return [e.status_change.to_status for e in events if e.WhichOneof("payload") == "status_change"]


def steps(events) -> list[pb.StepEvent]:
    return [e.step for e in events if e.WhichOneof("payload") == "step"]


@pytest.fixture(scope="module", autouse=True)
def _kill_leftovers():
    """Whatever a module started dies with it: each service's process group, and any worker a killed trainer
    of this module left behind (workers run in their own sessions; only those under our job folders)."""
    yield
    import psutil

    services.kill_started()
    roots = tuple(f"{r}/" for r in _ROOTS)
    _ROOTS.clear()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "services.trainer.worker" in cmd and roots and cmd[-1].startswith(roots):
                os.killpg(proc.pid, signal.SIGKILL)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue


FUZZ_AUTH = os.environ.get("FUZZ_AUTH", "")
"""``FUZZ_AUTH=user`` (or ``admin``, ``viewer``): the fuzz tests run with users and roles on, every request
carrying a key of that role (``make fuzz-auth``)."""


def fuzz_auth(root: Path) -> tuple[str | None, str | None]:
    """With ``FUZZ_AUTH`` set: a keys store under ``root`` holding one key of that role, and the key."""
    if not FUZZ_AUTH:
        return None, None
    from services.auth.store import KeyStore

    url = f"sqlite:///{root}/auth/keys.db"
    store = KeyStore(url, create=True)
    try:
        return url, store.create("fuzzer", FUZZ_AUTH)[1]
    finally:
        store.close()


def auth_settings(url: str | None) -> tuple[dict, dict]:
    """(exporter settings, trainer settings) for ``BackgroundBackends`` with the keys store at ``url``."""
    return ({"auth_database_url": url}, {"auth_database_url": url}) if url else ({}, {})


class BackgroundBackends:
    """The real exporter (with its sample debates) and trainer gRPC servers in this process, on an event loop
    of their own in a thread: a blocking client (schemathesis, hypothesis) can then call the gateway's ASGI
    app, or the servers, from the test's thread. The trainer has a model folder the catalogue lists (nothing
    here trains) and a data root with a dataset."""

    def __init__(self, tmp_path: Path, exporter_extra: dict | None = None, **trainer_settings) -> None:
        import threading

        from services.exporter import server as exporter_server
        from services.trainer import server as trainer_server
        from tests.conftest import exporter_settings
        from tests.conftest import trainer_settings as make_trainer_settings
        from tests.trainer.conftest import fake_model_folder

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="backends", daemon=True)
        self.thread.start()
        fake_model_folder(tmp_path / "models")
        write_dataset(tmp_path / "data")
        self.exporter = self.call(exporter_server.start(
            exporter_settings(tmp_path, load_samples=True, **(exporter_extra or {})), port=0))
        self.trainer = self.call(trainer_server.start(
            make_trainer_settings(tmp_path, self.exporter.address, **trainer_settings), port=0))
        self.tmp_path = tmp_path

    def call(self, coro, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.trainer.stop(0.5))
            self.call(self.exporter.stop(0.5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
