"""The default executor: each job's worker is a child process of the trainer, in its own session (a cancel ends
it and everything it started with one signal to its process group); its stdout carries the protocol lines."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

from services.trainer.artifacts import JobLayout
from services.trainer.config import TrainerSettings
from services.trainer.orm import Job
from services.trainer.protocol import WORKER_MODULE_ENV
from services.trainer.supervisor import MAX_LINE_BYTES, MemoryForensics, cgroup_oom_kills, signal_group


class LocalWorker:
    def __init__(self, proc: asyncio.subprocess.Process, memory: MemoryForensics) -> None:
        self.proc = proc
        self.pid: int | None = proc.pid
        self.where = f"pid {proc.pid}"
        self.attempt: str | None = None
        self.memory = memory
        self.detached = False
        self._exited = asyncio.Event()
        self._sampler: asyncio.Task | None = None

    async def lines(self) -> AsyncIterator[tuple[int, bytes | None]]:
        self._sampler = asyncio.get_running_loop().create_task(self._sample_memory())
        while True:
            try:
                raw = await self.proc.stdout.readline()
            except ValueError:
                yield 0, None  # a line over MAX_LINE_BYTES
                continue
            if not raw:
                return
            yield 0, raw

    async def handled(self, sequence: int) -> None:
        pass

    async def wait(self) -> int:
        try:
            return await self.proc.wait()
        finally:
            self._exited.set()
            if self._sampler is not None:
                self._sampler.cancel()

    async def terminate(self, kill_after: float) -> None:
        if self.proc.returncode is not None:
            return
        signal_group(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), kill_after)
        except TimeoutError:
            signal_group(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def release(self) -> None:
        signal_group(self.proc.pid, signal.SIGKILL)  # stragglers the worker started in its group

    def detach(self) -> None:
        raise NotImplementedError("a local worker ends with its trainer")

    async def _sample_memory(self, every: float = 1.0) -> None:
        """Keeps the worker tree's peak RSS and whether the machine ran low on memory, to explain a SIGKILL."""
        import psutil

        try:
            proc = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while True:
            try:
                self.memory.sample(proc)
            except psutil.Error:
                return
            await asyncio.sleep(every)


class LocalExecutor:
    name = "local"
    reattaches = False

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings

    async def reserve(self, job: Job) -> bool:
        return True  # max_concurrent_jobs is the only limit

    async def unreserve(self, job_id: str) -> None:
        pass

    async def start(self, job: Job, layout: JobLayout, env: dict[str, str]) -> LocalWorker:
        def prepare():
            return open(layout.worker_log, "ab"), cgroup_oom_kills()

        log_file, oom_kills = await asyncio.to_thread(prepare)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", os.environ.get(WORKER_MODULE_ENV) or "services.trainer.worker", str(layout.root),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                start_new_session=True, env=env, limit=MAX_LINE_BYTES,
            )
        finally:
            log_file.close()  # the child holds its own descriptor
        return LocalWorker(proc, MemoryForensics(oom_kills_at_start=oom_kills))

    def reattach(self, job: Job, layout: JobLayout) -> None:
        return None

    def waiting_reason(self, job: Job) -> str:
        return "a free worker slot"

    def close(self) -> None:
        pass
