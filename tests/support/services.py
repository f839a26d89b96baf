"""The product's services as separate OS processes, for tests and benchmarks alike.

``ServiceProcess`` runs ``python -m services.<name>`` (or any argv) in its own session, so a signal, a restart
or the end of a test reaches the whole process group (the trainer's workers included); its output goes to a log
file. ``grpc_ready`` / ``http_ready`` (async) and ``wait_grpc`` / ``wait_http`` (blocking) wait until a started
service answers, failing at once with the log's tail if it died. ``exporter_env`` / ``trainer_env`` /
``gateway_env`` build the environment a service reads its settings from (``EXPORTER_*``, ``TRAINER_*``,
``GATEWAY_*``) with every file under one root folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from signal import SIGTERM

REPO = Path(__file__).resolve().parents[2]

# Every process started through this module, so a fixture can end whatever a test left running.
STARTED: list[ServiceProcess] = []


class ServiceProcess:
    """One service process in its own session (process group), stdout and stderr appended to ``log``.

    ``argv`` defaults to ``python -m services.<name>``; ``cpus`` pins it (and its children) to those CPUs. With
    ``start=False`` nothing runs until :meth:`start`, which also starts it again after a stop (a restart)."""

    def __init__(self, name: str, env: dict[str, str], log: Path, *, argv: list[str] | None = None,
                 cpus: set[int] | None = None, cwd: Path = REPO, start: bool = True) -> None:
        self.name, self.env, self.log = name, env, Path(log)
        self.argv = argv or [sys.executable, "-m", f"services.{name}"]
        self.cpus, self.cwd = cpus, cwd
        self.proc: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cpus = self.cpus
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
        if self not in STARTED:
            STARTED.append(self)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Sends ``sig`` to the service process itself (not its group)."""
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = SIGTERM, timeout: float = 20.0) -> int | None:
        """``sig`` to the service, then SIGKILL to its whole group if it has not exited within ``timeout``."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        return self.returncode

    def kill_group(self) -> None:
        """SIGKILL to the service's whole process group (what is left of it and its children)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self in STARTED:
            STARTED.remove(self)

    def tail(self, n: int = 3000) -> str:
        """The last ``n`` characters of the log."""
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited with {self.returncode}:\n{self.tail()}")


def kill_started() -> None:
    """SIGKILL to the group of every service started through this module (its workers included)."""
    for service in list(STARTED):
        service.kill_group()


def base_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **extra)


def _prefixed(prefix: str, settings: dict) -> dict[str, str]:
    return {f"{prefix}_{k.upper()}": str(v) for k, v in settings.items()}


def exporter_env(root: Path, port: int, **settings) -> dict[str, str]:
    """The exporter on ``port`` (loopback), its database and exports under ``root``, no sample debates."""
    env = dict(host="127.0.0.1", port=port, database_url=f"sqlite:///{root}/exporter/debates.db",
               export_dir=root / "exports", load_samples="false", grace_seconds="0.5")
    env.update(settings)
    return _prefixed("EXPORTER", env)


def trainer_env(root: Path, port: int, models_dir: Path, exporter_address: str = "127.0.0.1:1",
                **settings) -> dict[str, str]:
    """The trainer on ``port`` (loopback), its database, jobs and data root under ``root``."""
    env = dict(host="127.0.0.1", port=port, database_url=f"sqlite:///{root}/trainer/jobs.db",
               jobs_dir=root / "jobs", models_dir=models_dir, data_root=root / "data",
               exporter_address=exporter_address, grace_seconds="0.5")
    env.update(settings)
    return _prefixed("TRAINER", env)


def gateway_env(port: int, trainer_address: str, exporter_address: str = "127.0.0.1:1",
                **settings) -> dict[str, str]:
    """The gateway on ``port`` (loopback) in front of the given gRPC addresses."""
    env = dict(host="127.0.0.1", port=port, trainer_address=trainer_address, exporter_address=exporter_address)
    env.update(settings)
    return _prefixed("GATEWAY", env)


async def grpc_ready(service: ServiceProcess, address: str, timeout: float = 90.0) -> None:
    """Waits until the server at ``address`` answers its health check SERVING (fails fast if it died)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        while True:
            service._check_alive()
            try:
                resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{service.name} not ready after {timeout}s:\n{service.tail()}")
            await asyncio.sleep(0.2)


def wait_grpc(service: ServiceProcess, address: str, timeout: float = 90.0) -> None:
    """The blocking form of :func:`grpc_ready`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        while True:
            service._check_alive()
            try:
                resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{service.name} not ready after {timeout}s:\n{service.tail()}")
            time.sleep(0.2)


async def http_ready(service: ServiceProcess, base_url: str, timeout: float = 60.0, path: str = "/healthz",
                     ok=lambda r: True) -> None:
    """Waits until the HTTP server at ``base_url`` answers ``path`` (any status, unless ``ok(response)`` says
    otherwise; fails fast if the service died)."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            service._check_alive()
            try:
                if ok(await client.get(f"{base_url}{path}")):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{service.name} not ready after {timeout}s:\n{service.tail()}")
            await asyncio.sleep(0.2)


def wait_http(services: list[ServiceProcess], base_url: str, timeout: float = 60.0, path: str = "/healthz",
              ok=lambda r: r.status_code == 200) -> None:
    """Blocks until ``GET base_url + path`` satisfies ``ok``; fails at once if one of ``services`` died."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while True:
            for s in services:
                s._check_alive()
            try:
                if ok(client.get(f"{base_url}{path}")):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tails = "\n".join(s.tail() for s in services)
                raise AssertionError(f"{base_url}{path} not ready after {timeout}s:\n{tails}")
            time.sleep(0.3)
