"""Where a job's worker runs: one small interface, two executors.

- ``local`` (``executors/local.py``, the default): ``python -m services.trainer.worker JOB_DIR`` as a child
  process of the trainer; its stdout carries the protocol lines.
- ``ray`` (``executors/ray.py``): the same worker process, started on a Ray cluster node by a relay actor that
  Ray places with the job's resource request; the lines come back over gRPC (``WorkerEventsService``).

The supervisor (``services.trainer.supervisor``) reads a ``Worker``'s lines, turns them into job events and decides
the outcome from its exit; the job manager asks the ``Executor`` for room, starts workers and, at start-up, finds
the workers a previous trainer left running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from services.trainer.artifacts import JobLayout
    from services.trainer.config import TrainerSettings
    from services.trainer.orm import Job
    from services.trainer.supervisor import MemoryForensics


LOST = None
"""What ``Worker.wait`` returns when the worker vanished without an exit code (its node died)."""


class Worker(Protocol):
    """One launched worker process, wherever it runs."""

    pid: int | None
    """The worker process's id (on its own node)."""
    where: str
    """Where it runs, for the job's log: ``pid 1234`` (``pid 1234 on node 10.0.0.5`` on a cluster)."""
    attempt: str | None
    """The id of this launch, where its lines travel over the network (stored with the job)."""
    memory: MemoryForensics
    """What was seen of its memory (to explain a SIGKILL); empty where the executor cannot see it."""
    detached: bool
    """The trainer stopped following it (its stop leaves the worker running for the next trainer)."""

    def lines(self) -> AsyncIterator[tuple[int, bytes | None]]:
        """(sequence, raw line) until the worker's output ends; sequence 0 where lines are not numbered, None
        for a line over ``MAX_LINE_BYTES`` (dropped)."""

    async def handled(self, sequence: int) -> None:
        """Line ``sequence`` is handled and stored (a remote worker may forget it)."""

    async def wait(self) -> int | None:
        """The exit code (negative: killed by that signal), or ``LOST``."""

    async def terminate(self, kill_after: float) -> None:
        """SIGTERM (the worker checkpoints its last finished step), SIGKILL after ``kill_after`` seconds."""

    async def release(self) -> None:
        """After the exit: ends what the worker left behind and frees its resources."""

    def detach(self) -> None:
        """Stop following the worker and leave it running (``Executor.reattaches``)."""


class Executor(Protocol):
    name: str
    reattaches: bool
    """A trainer stop leaves the workers running and the next trainer follows them (ray); else it ends them."""

    async def reserve(self, job: Job) -> bool:
        """Reserves room for the job's worker; ``False``: no room now (the job stays queued, in order)."""

    async def unreserve(self, job_id: str) -> None:
        """Gives back a reservation whose worker did not start."""

    async def start(self, job: Job, layout: JobLayout, env: dict[str, str]) -> Worker:
        """Starts the worker of ``job`` (its ``job.json`` is written); raises what stops it."""

    def reattach(self, job: Job, layout: JobLayout) -> Worker | None:
        """At start-up: the worker of a running ``job`` a previous trainer left running, or None."""

    def waiting_reason(self, job: Job) -> str:
        """Why a job waits (for its ``queued`` log line)."""

    def close(self) -> None:
        ...


def make_executor(settings: TrainerSettings) -> Executor:
    if settings.executor == "ray":
        from services.trainer.executors.ray import RayExecutor

        return RayExecutor(settings)
    from services.trainer.executors.local import LocalExecutor

    return LocalExecutor(settings)
