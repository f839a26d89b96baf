"""The Ray executor (``executor = "ray"``): each job's worker runs on a node of a Ray cluster.

How a job runs there:

- **Room, in order.** The job at the head of the trainer's queue asks the cluster for a placement group of one
  bundle: ``job_resources`` (CPUs, GPUs, memory, plus ``ray_resources``). Until Ray can reserve it, every job
  waits in ``queued`` (the trainer looks again every few seconds); nothing behind it jumps the queue.
- **The relay actor.** A detached actor named ``job-<job id>`` (namespace ``aragora-training``) is placed in that
  group; it starts the ordinary worker process, ``python -m services.trainer.worker JOB_DIR``, on its node (the
  job folder lies on a filesystem every node mounts at the same path) and numbers its stdout lines 1, 2, 3, ...
- **Events over gRPC.** The relay sends the lines to the trainer's ``WorkerEventsService.ReportLines`` and keeps
  every line until the trainer acknowledges it; after a dropped connection or a trainer restart it sends again
  from the last acknowledged one. The trainer handles a line once: the last one handled is stored with the
  line's event (``jobs.worker_seq``, in the same transaction), so a line sent twice is skipped.
- **Cancel** sends SIGTERM to the worker (it checkpoints), SIGKILL after 5 s, then kills the actor and removes
  the placement group: the job's CPUs and GPUs are free again.
- **A node that dies** takes the actor and its worker with it (the worker dies with its parent, PR_SET_PDEATHSIG);
  the trainer sees the actor die and resumes the job from its newest checkpoint on a node that is still there.
- **A trainer restart** leaves the actors running (they are detached); the new trainer finds each running job's
  actor by name, checks it is the same launch (``jobs.worker_attempt``) and follows it again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from services.trainer.artifacts import JobLayout
from services.trainer.config import TrainerSettings
from services.trainer.executors import LOST
from services.trainer.orm import Job
from services.trainer.protocol import (
    WORKER_HUB_TOKEN_ENV,
    WORKER_MAX_FILE_ENV,
    WORKER_TOKEN_ENV,
    encode_line,
)
from services.trainer.supervisor import LINE_DROPPED, MAX_LINE_BYTES, MemoryForensics, signal_group
from services.trainer.worker.signals import die_with_parent

log = logging.getLogger(__name__)

NAMESPACE = "aragora-training"
"""The Ray namespace of the relay actors and placement groups (named ``job-<job id>``)."""
GIB = 1024**3
RUNTIME_BYTES = 1 * GIB
"""Memory a worker process needs besides the model's weights: Python, torch, tokenizer, data, activations of a
small batch."""
BYTES_PER_PARAMETER = {"4bit": 0.5, "8bit": 1.0}
"""Bytes per base-model weight by ``quantization``; ``none`` is 4 (fp32) on a CPU node and 2 (bf16) on a GPU."""
READY_WAIT_SECONDS = 1.0
"""How long ``reserve`` waits for Ray to place the next job's group before the job keeps waiting."""
BATCH_LINES = 500
BATCH_BYTES = 8 * 1024**2
"""A relay sends at most this many lines / bytes per call (far below the servers' 64 MiB message limit)."""
SEND_TIMEOUT_SECONDS = 10.0
WATCH_POLL_SECONDS = 20.0
"""How long one ``JobRelay.wait_done`` call (the trainer's watch on the actor's life) may block a relay thread."""
RECEIVE_WAIT_SECONDS = 5.0
"""How long ``ReportLines`` waits for the lines it brought to be stored before it answers."""
_PASSED_ENV = ("HF_HUB_OFFLINE", "PYTHONUNBUFFERED", "TOKENIZERS_PARALLELISM", WORKER_TOKEN_ENV,
               WORKER_MAX_FILE_ENV, WORKER_HUB_TOKEN_ENV)
"""What of the trainer's worker environment travels to the node (the rest is the node's own environment)."""


def actor_name(job_id: str) -> str:
    return f"job-{job_id}"


def job_resources(config: dict, settings: TrainerSettings, parameters: int, cluster_has_gpus: bool) -> dict:
    """The Ray resources one job asks for (one placement-group bundle), from its config and its base model:

    - ``CPU``: ``ray_cpus_per_worker`` per worker process (``num_workers``, at least 1);
    - ``GPU``: one per worker process when the cluster has GPUs (the worker trains on the GPU Ray gives it), none
      otherwise (it trains on the CPU);
    - ``memory``: per worker, the base model's weights at the bytes per weight of its ``quantization`` (4-bit 0.5,
      8-bit 1, none: 2 on a GPU, 4 on a CPU) plus ``RUNTIME_BYTES``, rounded up to 64 MiB;
    - every custom resource of ``ray_resources`` as it is.
    """
    workers = max(1, int(config.get("num_workers") or 1))
    quantization = str(config.get("quantization") or "none")
    per_weight = BYTES_PER_PARAMETER.get(quantization, 2.0 if cluster_has_gpus else 4.0)
    chunk = 64 * 1024**2
    memory = math.ceil((parameters * per_weight + RUNTIME_BYTES) / chunk) * chunk * workers
    bundle = {"CPU": float(settings.ray_cpus_per_worker) * workers, "memory": float(memory)}
    if cluster_has_gpus:
        bundle["GPU"] = float(workers)
    bundle.update({k: float(v) for k, v in (settings.ray_resources or {}).items()})
    return bundle


def describe(bundle: dict) -> str:
    parts = []
    for key, value in bundle.items():
        if key == "memory":
            parts.append(f"{value / GIB:.1f} GiB memory")
        else:
            parts.append(f"{value:g} {key}")
    return ", ".join(parts)


# -- on the node: the relay actor ------------------------------------------------------------------------------


def _worker_preexec() -> None:
    """In the worker, before exec: SIGKILL when the relay (its parent) dies, e.g. with its node; its own session."""
    die_with_parent()
    os.setsid()


class JobRelay:
    """Runs one job's worker process on its node and relays its lines to the trainer (a Ray actor; its methods
    run on several threads: ``wait_done`` blocks while ``stop`` comes in)."""

    def __init__(self, job_id: str, attempt: str, job_dir: str, env: dict[str, str], trainer_address: str,
                 tls: tuple[str, str, str] = ("", "", "")) -> None:
        self.job_id, self.attempt, self.job_dir = job_id, attempt, job_dir
        self.tls = tls
        """The worker's certificate, key and CA files (on the shared filesystem) when the trainer serves TLS."""
        self.env = {k: v for k, v in os.environ.items() if k not in _PASSED_ENV}
        self.env.update(env)
        # The worker imports this project as this process does (a node's Ray worker may run elsewhere than the
        # project's folder): the project root and its generated/ first on its path.
        root = Path(__file__).resolve().parents[3]
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(root), str(root / "generated"), *filter(None, [self.env.get("PYTHONPATH")])])
        self.trainer_address = trainer_address
        self.token = env.get(WORKER_TOKEN_ENV)
        self.proc: subprocess.Popen | None = None
        self.node = ray.util.get_node_ip_address()
        self._cond = threading.Condition()
        self._pending: list[tuple[int, str, int | None]] = []
        self._seq = 0
        self._acked = 0
        self._done = False
        self._rc: int | None = None
        self._channel = None
        self._spawned = threading.Event()
        self._spawn_error: str | None = None
        self._outcome_lines: dict[str, tuple[int, str]] = {}
        """The worker's result and last error line with their sequences: a trainer that restarts after it
        stored them learns the outcome from ``info`` (they decide how the job ends)."""
        threading.Thread(target=self._run_worker, name="worker", daemon=True).start()
        threading.Thread(target=self._send, name="sender", daemon=True).start()

    # the worker process (one thread spawns and reads it, and lives as long as it: PR_SET_PDEATHSIG follows it)

    def _run_worker(self) -> None:
        try:
            with open(Path(self.job_dir) / "worker.log", "ab") as log_file:
                self.proc = subprocess.Popen([sys.executable, "-m", "services.trainer.worker", self.job_dir],
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                                             env=self.env, preexec_fn=_worker_preexec)
        except Exception as exc:
            self._spawn_error = f"{type(exc).__name__}: {exc}"
            self._spawned.set()
            self._add("", 127)
            return
        self._spawned.set()
        while True:
            raw = self.proc.stdout.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # the rest of the long line
                    raw = self.proc.stdout.readline(MAX_LINE_BYTES)
                self._add(encode_line("warning", LINE_DROPPED))
                continue
            self._add(raw.decode("utf-8", errors="replace").rstrip("\n"))
        rc = self.proc.wait()
        signal_group(self.proc.pid, signal.SIGKILL)  # stragglers the worker started in its group
        self._add("", rc)

    def _add(self, line: str, exit_code: int | None = None) -> None:
        kind = next((k for k in ("result", "error") if f'"type": "{k}"' in line[:40]), None)
        with self._cond:
            self._seq += 1
            self._pending.append((self._seq, line, exit_code))
            if kind:
                self._outcome_lines[kind] = (self._seq, line)
            if exit_code is not None:
                self._rc = exit_code
            self._cond.notify_all()

    # the stream to the trainer

    def _connect(self):
        from aragora.training.v1 import worker_events_pb2_grpc
        from services.common.grpc_server import CHANNEL_OPTIONS
        from services.common.tls import TlsFiles, sync_channel

        if self._channel is not None:
            self._channel.close()
        tls = TlsFiles(*self.tls)
        self._channel = sync_channel(self.trainer_address, tls if tls.enabled else None, CHANNEL_OPTIONS)
        return worker_events_pb2_grpc.WorkerEventsServiceStub(self._channel)

    def _send(self) -> None:
        import grpc

        from aragora.training.v1 import worker_events_pb2 as pb

        stub = self._connect()
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else []
        backoff = 0.2
        while True:
            with self._cond:
                # ``_pending`` holds only lines not acknowledged yet (``_add`` numbers past the ack, the ack
                # drops what it covers); ``_add`` and the end notify.
                self._cond.wait_for(lambda: self._done or self._pending)
                if self._done:
                    return
                batch, size = [], 0
                for record in self._pending:
                    size += len(record[1])
                    if batch and (len(batch) >= BATCH_LINES or size > BATCH_BYTES):
                        break
                    batch.append(record)
                if self._channel is None:
                    stub = self._connect()
            request = pb.ReportLinesRequest(
                job_id=self.job_id, attempt=self.attempt, pid=self.proc.pid if self.proc else 0,
                lines=[pb.WorkerLine(sequence=seq, line=line, exit_code=code) if code is not None
                       else pb.WorkerLine(sequence=seq, line=line) for seq, line, code in batch])
            try:
                reply = stub.ReportLines(request, timeout=SEND_TIMEOUT_SECONDS, metadata=metadata)
            except grpc.RpcError as exc:
                log.info("job %s: trainer at %s unreachable (%s); sending again", self.job_id,
                         self.trainer_address, exc.code())
                time.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.2
            with self._cond:
                self._acked = max(self._acked, reply.acked_sequence)
                self._pending = [r for r in self._pending if r[0] > self._acked]
                exit_acked = self._rc is not None and not self._pending
                if exit_acked:
                    self._done = True
                self._cond.notify_all()
            if reply.stop:
                self._stop_for_good()
                return
            if exit_acked:
                return
            if batch and reply.acked_sequence < batch[-1][0]:
                time.sleep(0.05)  # the trainer is still storing them: it answers with what it has

    def _stop_for_good(self) -> None:
        """The trainer follows another launch of this job (or none): end the worker, the group and the actor."""
        self.stop(0.0)
        with self._cond:
            self._done = True
            self._cond.notify_all()
        try:
            group = ray.util.get_current_placement_group()
            if group is not None:
                remove_placement_group(group)
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        except Exception:
            os._exit(0)

    # called by the trainer

    def info(self) -> dict:
        """Where the worker runs (waits until it started)."""
        self._spawned.wait(60)
        if self._spawn_error:
            raise RuntimeError(f"could not start the worker on {self.node}: {self._spawn_error}")
        with self._cond:
            outcome = list(self._outcome_lines.values())
        return {"pid": self.proc.pid if self.proc else None, "node": self.node, "attempt": self.attempt,
                "node_id": ray.get_runtime_context().get_node_id(), "outcome_lines": outcome}

    def wait_done(self, timeout: float) -> bool:
        """Whether the relay is done (the trainer acknowledged the worker's exit, or told it to stop), waiting
        at most ``timeout`` s: a caller polls, so a trainer that died while waiting holds no thread for long."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done, timeout)

    def stop(self, kill_after: float) -> int | None:
        """SIGTERM to the worker's process group (it checkpoints), SIGKILL after ``kill_after`` s."""
        self._spawned.wait(60)
        proc = self.proc
        if proc is None:
            return self._rc
        for sig, wait in ((signal.SIGTERM, kill_after), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            signal_group(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return proc.poll()

    def drop_connection(self) -> None:
        """Closes the channel to the trainer (the next send opens a new connection): a cut connection, for tests."""
        with self._cond:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


RemoteRelay = ray.remote(JobRelay)


# -- in the trainer: the worker as the supervisor sees it ------------------------------------------------------


_END = object()


class RayWorker:
    """A job's relay actor, seen from the trainer: its lines (as ``ReportLines`` delivers them), its exit."""

    def __init__(self, job_id: str, attempt: str, actor, group, info: dict, handled: int = 0,
                 on_release=None) -> None:
        self.job_id, self.attempt, self.actor, self.group = job_id, attempt, actor, group
        self._on_release = on_release
        self.located(info)  # pid, node, node_id, where, outcome_lines
        self.memory = MemoryForensics()
        self.detached = False
        self._queue: asyncio.Queue = asyncio.Queue()
        self._queued = handled
        """The last sequence put in the queue (or handled before this trainer started)."""
        self._handled = handled
        self._progress = asyncio.Condition()
        self._receive_lock = asyncio.Lock()
        self._exit: int | None | object = _END  # _END: not known yet
        self._watcher: asyncio.Task | None = None
        self._released = False

    def located(self, info: dict) -> None:
        """Where the relay says its worker runs (``JobRelay.info``)."""
        self.pid, self.node, self.node_id = info.get("pid"), info.get("node", ""), info.get("node_id", "")
        self.outcome_lines: list[tuple[int, bytes]] = [(seq, line.encode()) for seq, line in
                                                       info.get("outcome_lines", [])]
        """The result and last error lines the worker sent so far (a reattached supervisor's memory)."""
        self.where = f"pid {self.pid} on node {self.node} ({self.node_id[:12]})"

    async def receive(self, lines) -> int:
        """Queues the new lines of a ``ReportLines`` call in order (repeats skipped, nothing after a gap) and
        answers, once they are stored (or after ``RECEIVE_WAIT_SECONDS``), the last sequence stored."""
        async with self._receive_lock:
            for item in lines:
                seq = int(item.sequence)
                if seq <= self._queued:
                    continue  # sent again after a dropped answer: already handled (or queued)
                if seq != self._queued + 1:
                    break  # a gap: the relay sends again from what we acknowledge
                self._queued = seq
                if item.HasField("exit_code"):
                    self._exit = int(item.exit_code)
                    self._queue.put_nowait(_END)
                    break
                self._queue.put_nowait((seq, item.line.encode("utf-8")))
            # Everything queued, but the exit record: it is not a line, the supervisor's end decides it.
            target = self._queued if self._exit is _END else self._queued - 1
        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(lambda: self._handled >= target),
                                       RECEIVE_WAIT_SECONDS)
            except TimeoutError:
                pass
            return self._handled

    async def lines(self) -> AsyncIterator[tuple[int, bytes | None]]:
        if self.actor is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item

    async def _watch(self) -> None:
        """Ends the lines when the actor dies (its node died, or it was killed) before its exit came."""
        try:
            while not await self.actor.wait_done.remote(WATCH_POLL_SECONDS):
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # RayActorError, ActorDiedError, ...
            log.warning("job %s: its relay actor died: %s", self.job_id, str(exc).splitlines()[0][:300])
        self._queue.put_nowait(_END)

    async def handled(self, sequence: int) -> None:
        async with self._progress:
            self._handled = max(self._handled, sequence)
            self._progress.notify_all()

    async def wait(self) -> int | None:
        if self._watcher is not None:
            self._watcher.cancel()
        return LOST if self._exit is _END else self._exit

    async def terminate(self, kill_after: float) -> None:
        try:
            await asyncio.wait_for(self.actor.stop.remote(kill_after), kill_after + 5.0)
        except Exception as exc:
            if not self._released:  # else it ended meanwhile and its relay was killed: nothing to report
                log.warning("job %s: stopping its worker: %s", self.job_id, str(exc).splitlines()[0][:300])
        await self.release()
        if self._exit is _END:
            self._queue.put_nowait(_END)  # the exit may not come any more: the actor is gone

    async def release(self) -> None:
        """Kills the relay actor and removes its placement group: the job's resources are free."""
        if self._released:
            return
        self._released = True
        if self._watcher is not None:
            self._watcher.cancel()
        await asyncio.to_thread(_kill_and_remove, self.actor, self.group)
        if self._on_release is not None:
            self._on_release(self)

    def detach(self) -> None:
        self.detached = True
        if self._watcher is not None:
            self._watcher.cancel()
        self._queue.put_nowait(_END)


def _kill_and_remove(actor, group) -> None:
    if actor is not None:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:
            pass
    if group is not None:
        try:
            remove_placement_group(group)
        except Exception:
            pass


# -- the executor ----------------------------------------------------------------------------------------------


class RayExecutor:
    name = "ray"
    reattaches = True

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.models_dir = Path(settings.models_dir).absolute()
        self._own_connection = not ray.is_initialized()
        if self._own_connection:
            address = settings.ray_address or "auto"
            try:
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
            except ConnectionError as exc:
                raise ConnectionError(f"TRAINER_RAY_ADDRESS: no Ray cluster reachable at {address!r} "
                                      f"(TRAINER_EXECUTOR is 'ray'): {exc}") from exc
        self.callback_address = settings.ray_callback_address
        self._groups: dict[str, object] = {}
        """Placement groups reserved (or pending) for jobs whose worker has not started yet."""
        self._workers: dict[str, RayWorker] = {}
        self._requests: dict[str, dict] = {}

    def serving_at(self, host: str, port: int) -> None:
        """The trainer's gRPC server listens on ``host:port``: where relays send lines, unless
        ``ray_callback_address`` says otherwise."""
        if not self.settings.ray_callback_address:
            if host in ("0.0.0.0", "::", ""):
                host = ray.util.get_node_ip_address() or socket.gethostname()
            self.callback_address = f"{host}:{port}"

    # room on the cluster

    def request(self, job: Job) -> dict:
        if job.id not in self._requests:
            from services.trainer import models

            try:
                info = models.resolve_model(self.models_dir, job.base_model)
                parameters = int(getattr(info, "parameters", 0) or 0)
                if not parameters and info.path is not None:
                    parameters = models.count_parameters(Path(info.path))
            except Exception:
                parameters = 0
            gpus = ray.cluster_resources().get("GPU", 0) > 0
            self._requests[job.id] = job_resources(job.training_config or {}, self.settings, parameters, gpus)
        return self._requests[job.id]

    async def reserve(self, job: Job) -> bool:
        group = self._groups.get(job.id)
        if group is None:
            bundle = await asyncio.to_thread(self.request, job)
            group = await asyncio.to_thread(self._new_group, job.id, bundle)
            self._groups[job.id] = group
        try:
            await asyncio.wait_for(asyncio.shield(group.ready()), READY_WAIT_SECONDS)
        except TimeoutError:
            return False  # the group stays pending: Ray places it as soon as the cluster has room
        return True

    def _new_group(self, job_id: str, bundle: dict):
        try:  # a group a previous launch of the job left (a lost node, a trainer that stopped)
            remove_placement_group(ray.util.get_placement_group(actor_name(job_id)))
        except Exception:
            pass
        return placement_group([bundle], strategy="STRICT_PACK", name=actor_name(job_id), lifetime="detached")

    async def unreserve(self, job_id: str) -> None:
        group = self._groups.pop(job_id, None)
        self._requests.pop(job_id, None)
        if group is not None:
            await asyncio.to_thread(_kill_and_remove, None, group)

    def waiting_reason(self, job: Job) -> str:
        bundle = self._requests.get(job.id)
        return "room on the Ray cluster" + (f" (it asks for {describe(bundle)})" if bundle else "")

    # workers

    async def start(self, job: Job, layout: JobLayout, env: dict[str, str]) -> RayWorker:
        """Starts the job's relay in the group ``reserve`` got (on failure the job manager ``unreserve``s it)."""
        group, bundle = self._groups.get(job.id), self._requests.get(job.id)
        if group is None or bundle is None:
            raise RuntimeError("no room was reserved on the cluster for the job")
        attempt = uuid.uuid4().hex
        passed = {k: env[k] for k in _PASSED_ENV if k in env}
        files = self.settings.worker_tls()
        tls = tuple(str(Path(f).absolute()) if f else "" for f in (files.cert_file, files.key_file, files.ca_file))
        custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")}

        def create():
            try:  # an actor a previous launch left behind
                ray.kill(ray.get_actor(actor_name(job.id), namespace=NAMESPACE), no_restart=True)
            except Exception:
                pass
            return RemoteRelay.options(
                name=actor_name(job.id), namespace=NAMESPACE, lifetime="detached", max_restarts=0,
                max_concurrency=16, num_cpus=bundle["CPU"], num_gpus=bundle.get("GPU", 0),
                memory=int(bundle["memory"]), resources=custom or None,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0),
            ).remote(job.id, attempt, str(layout.root), passed, self.callback_address, tls)

        actor = await asyncio.to_thread(create)
        worker = RayWorker(job.id, attempt, actor, group, {}, on_release=self._forget)
        self._workers[job.id] = worker
        try:
            info = await actor.info.remote()
        except Exception:
            self._workers.pop(job.id, None)
            await asyncio.to_thread(_kill_and_remove, actor, None)
            raise
        del self._groups[job.id], self._requests[job.id]
        worker.located(info)
        return worker

    def reattach(self, job: Job, layout: JobLayout) -> RayWorker | None:
        """The relay of ``job`` if it still runs the launch the job's store names."""
        try:
            actor = ray.get_actor(actor_name(job.id), namespace=NAMESPACE)
            info = ray.get(actor.info.remote(), timeout=30)
        except Exception:
            return None
        if not job.worker_attempt or info.get("attempt") != job.worker_attempt:
            _kill_and_remove(actor, None)
            return None
        try:
            group = ray.util.get_placement_group(actor_name(job.id))
        except Exception:
            group = None
        worker = RayWorker(job.id, job.worker_attempt, actor, group, info, handled=int(job.worker_seq or 0),
                           on_release=self._forget)
        self._workers[job.id] = worker
        return worker

    async def receive(self, job_id: str, attempt: str, lines) -> tuple[int, bool]:
        """A relay's ``ReportLines``: (the last sequence stored, whether the relay should stop)."""
        worker = self._workers.get(job_id)
        if worker is None or worker.attempt != attempt or worker._released:
            return 0, True
        return await worker.receive(lines), False

    def _forget(self, worker: RayWorker) -> None:
        if self._workers.get(worker.job_id) is worker:
            del self._workers[worker.job_id]

    def close(self) -> None:
        for job_id in list(self._groups):
            _kill_and_remove(None, self._groups.pop(job_id))
        if self._own_connection:
            ray.shutdown()
