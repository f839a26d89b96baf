"""Data-parallel training (``training_config.num_workers``): the ranks, how they start, what they exchange.

A job with ``num_workers`` N > 1 trains in N processes (ranks) with ``torch.distributed``: gloo on CPU, NCCL on
CUDA (one GPU per rank, ``cuda:<local rank>``). Every rank holds the whole model with the same LoRA weights;
for each optimizer step each rank computes the loss of its share of every batch of the step (``shard``:
``batch[rank::N]``), the ranks sum their weighted gradients and loss figures (``reduce_step``: one all-reduce
of the trainable gradients, one all-gather of the step's figures) and every rank takes the same optimizer step,
so the run is the optimisation of one process with the same ``batch_size`` and ``gradient_accumulation_steps``
(the global batch), up to floating-point summation order. Rank 0 alone fetches the data (and sends it to the
others), writes ``data/``, the events, checkpoints, the adapter and ``metrics.json`` and runs the evaluation;
every rank loads the checkpoint a resumed job continues from. The other ranks end when training ends.

How the ranks start (``setup``):

- Launched here (the default; the trainer's local executor): the worker process the trainer started is rank 0;
  it spawns ranks 1..N-1 as child processes (``torch.multiprocessing``, spawn), rendezvous on a TCP store at
  ``127.0.0.1`` on a free port. The children die with rank 0 (``PR_SET_PDEATHSIG``) and ignore the stop
  signals the trainer sends the process group: rank 0 writes the stop checkpoint and exits, they follow. A
  rank that fails ends the job with its reason (``failed rank``).
- Launched by someone else (a cluster): when ``torch.distributed`` is already initialised (Ray Train's
  ``TorchTrainer`` does this in each of its workers) or the environment names the ranks (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``: what ``torchrun`` sets), every rank runs
  ``python -m services.trainer.worker JOB_DIR`` (or ``runner.run_job``) itself and joins that group; the job
  folder must then be on a filesystem every node mounts. Only rank 0's stdout carries events.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError
from services.trainer.worker.signals import STOP_SIGNALS, die_with_parent

MASTER_ADDR = "127.0.0.1"
TIMEOUT = timedelta(hours=2)
"""How long a collective waits for a slow rank (a long validation or checkpoint on rank 0) before failing; a
rank that dies is noticed at once (``_watch``), not after this."""
FAILURE_GRACE_S = 10.0
"""After a rank dies, how long rank 0's main thread has to report it itself before the watcher ends the job."""


class SilentSink(EventSink):
    """The event sink of ranks other than 0: rank 0 reports the job, the others stay quiet."""

    def __init__(self) -> None:
        super().__init__(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (open for the process' life)

    def emit(self, type: str, message: str = "", **fields) -> None:
        if type in ("warning", "error"):
            print(f"worker rank {os.environ.get('RANK', '?')}: {type}: {message}", file=sys.stderr, flush=True)


def threads_per_rank(num_threads: int | None, world: int) -> int:
    """Torch threads of one rank on CPU: the CPUs this worker may use shared out between its ranks."""
    total = num_threads or len(os.sched_getaffinity(0)) or 1
    return max(1, total // world)


@dataclass
class Group:
    """This process's place in a data-parallel job, and the collectives the loop and runner use."""

    rank: int
    world: int
    local_rank: int
    backend: str
    device: object
    threads: int
    children: list = field(default_factory=list)
    """Rank 0 launched here: the child processes of ranks 1..N-1."""
    errors: object = None
    failure: str | None = None
    _closing: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- the loop's hooks -----------------------------------------------------------------------------------

    def shard(self, indices: list[int]) -> list[int]:
        """This rank's share of a batch (possibly empty when the batch has fewer examples than ranks)."""
        return indices[self.rank::self.world]

    def broadcast_params(self, params) -> None:
        """Rank 0's values of ``params`` into every rank (the same start, whatever each rank loaded)."""
        import torch.distributed as dist

        self._collective(lambda: [dist.broadcast(p.data, src=0) for p in params])

    def reduce_step(self, params, outs: list, losses: list[float], weights: list[float]):
        """Sums the ranks' weighted gradients of one optimizer step and divides them by the total weight (the
        gradient of one batch of them all), and combines the step's figures. Each rank's ``params`` hold
        ``sum(w_b * grad loss_b)`` over its batches (``weights``); returns (the step's loss, a ``StepOutput``
        with the global examples, tokens, trained tokens and the examples-weighted mean of ``extra``)."""
        import torch
        import torch.distributed as dist

        from services.trainer.worker.methods.base import StepOutput

        mine = {"w": sum(weights), "lw": sum(lo * w for lo, w in zip(losses, weights)),
                "examples": sum(o.examples for o in outs), "tokens": sum(o.tokens for o in outs),
                "trained": sum(o.trained_tokens for o in outs),
                "extra": {k: sum(o.extra.get(k, 0.0) * o.examples for o in outs)
                          for k in set().union(*(o.extra for o in outs))} if outs else {}}
        gathered: list = [None] * self.world
        self._collective(lambda: dist.all_gather_object(gathered, mine))
        total_w = sum(g["w"] for g in gathered) or 1.0
        params = list(params)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self.device)
        self._collective(lambda: dist.all_reduce(flat))
        flat.div_(total_w)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n
        examples = sum(g["examples"] for g in gathered)
        keys = set().union(*(g["extra"] for g in gathered))
        extra = {k: sum(g["extra"].get(k, 0.0) for g in gathered) / (examples or 1) for k in sorted(keys)}
        merged = StepOutput(None, examples, sum(g["tokens"] for g in gathered),
                            sum(g["trained"] for g in gathered), extra)
        return sum(g["lw"] for g in gathered) / total_w, merged

    def sum_floats(self, *values: float) -> list[float]:
        """``values`` summed over the ranks (the same result on every rank)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self._collective(lambda: dist.all_reduce(t))
        return [float(x) for x in t.cpu()]

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank (the training records rank 0 fetched)."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        self._collective(lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    # -- failures and the end -------------------------------------------------------------------------------

    def _collective(self, fn):
        try:
            return fn()
        except WorkerError:
            raise
        except Exception as exc:
            # A dead peer breaks the connection: report the rank that failed, not the broken connection.
            reason = self._wait_failure(FAILURE_GRACE_S / 2) if self.children else None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise WorkerError(reason or f"data-parallel training: rank {self.rank} of {self.world} lost "
                                        f"contact with the other ranks ({first})") from None

    def _wait_failure(self, seconds: float) -> str | None:
        deadline = time.monotonic() + seconds
        while self.failure is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.failure

    def _watch(self, events: EventSink) -> None:
        """Rank 0's watcher of its child ranks: a rank that exits with an error ends the job with its reason
        (reported by the main thread when it is in a collective, else here after ``FAILURE_GRACE_S``)."""
        while not self._closing:
            for proc in self.children:
                if proc.exitcode not in (None, 0) and not self._closing:
                    reason = None
                    try:
                        rank, reason = self.errors.get(timeout=2)
                    except (queue.Empty, OSError, EOFError):
                        rank = self.children.index(proc) + 1
                    code = proc.exitcode
                    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    self.failure = (f"data-parallel training: worker rank {rank} of {self.world} failed: "
                                    f"{reason or how}")
                    time.sleep(FAILURE_GRACE_S)
                    if not self._closing:
                        events.error(self.failure)
                        os._exit(1)
                    return
            time.sleep(0.5)

    def close(self, abort: bool = False) -> None:
        """The end of the job on this rank: rank 0 waits for its children to finish (they end right after
        training) and ends any still running; ``abort`` (this rank failed): ends them at once."""
        import torch.distributed as dist

        self._closing = True
        for proc in self.children:
            if abort:
                proc.kill()
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 (best effort at the end of the process)
                pass

    def describe(self) -> str:
        return f"{self.world} data-parallel workers ({self.backend}, {self.threads} threads each)" + (
            "" if self.backend == "gloo" else f", one {self.device.type.upper()} device each")


# -- starting the ranks ------------------------------------------------------------------------------------------

def _backend() -> tuple[str, object]:
    import torch

    return ("nccl", "cuda") if torch.cuda.is_available() else ("gloo", "cpu")


def _init(rank: int, world: int, local_rank: int, threads: int, store=None) -> Group:
    import torch
    import torch.distributed as dist

    backend, kind = _backend()
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():  # (without a store torch reads the env:// variables)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=TIMEOUT)
    return Group(rank, world, local_rank, dist.get_backend(), device, threads)


def launched_outside() -> bool:
    """Whether this process is one rank of a group someone else launched (Ray Train, torchrun)."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return True
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def from_environment(job: JobConfig) -> Group:
    """Joins the group someone else launched (``launched_outside``): an initialised ``torch.distributed`` or
    the ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` environment."""
    from services.trainer.worker import modeling

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # ranks on this machine (torchrun sets it)
    threads = modeling.configure_threads(threads_per_rank(job.num_threads, local_world))
    import torch.distributed as dist

    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != job.spec.world_size:
        raise WorkerError(f"training_config.num_workers is {job.spec.num_workers} but this worker was launched as "
                          f"one of {world} ranks")
    return _init(rank, world, int(os.environ.get("LOCAL_RANK", "0") or 0), threads)


def setup(job: JobConfig, events: EventSink) -> Group | None:
    """The job's data-parallel group, or None for a job of one process."""
    if launched_outside():
        return from_environment(job)
    if job.spec.world_size <= 1:
        return None
    return launch(job, events, job.spec.world_size)


def launch(job: JobConfig, events: EventSink, world: int) -> Group:
    """Rank 0 here, ranks 1..world-1 spawned as child processes of this one, on this machine."""
    from services.trainer.worker import modeling

    threads = modeling.configure_threads(threads_per_rank(job.num_threads, world))
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if torch.cuda.is_available() and torch.cuda.device_count() < world:
        raise WorkerError(f"training_config.num_workers {world}: this machine has {torch.cuda.device_count()} "
                          f"GPU(s) and each worker needs one")
    store = dist.TCPStore(MASTER_ADDR, 0, world, is_master=True, timeout=TIMEOUT, wait_for_workers=False)
    port = store.port
    os.environ.update(MASTER_ADDR=MASTER_ADDR, MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK="0",
                      LOCAL_RANK="0")
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    children = []
    for rank in range(1, world):
        proc = ctx.Process(target=_rank_main, args=(rank, world, port, str(job.job_dir), threads, errors),
                           name=f"worker-rank-{rank}", daemon=True)
        proc.start()
        children.append(proc)
    # multiprocessing's resource tracker (started for the queue) unblocks SIGTERM/SIGINT in this thread when it
    # has started; block them again so the stop watcher (``signals.StopGuard``) alone receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    group = _init(0, world, 0, threads, store=store)
    group.children, group.errors = children, errors
    threading.Thread(target=group._watch, args=(events,), name="rank-watcher", daemon=True).start()
    return group


def _rank_main(rank: int, world: int, port: int, job_dir: str, threads: int, errors) -> None:
    """A spawned rank: joins the group, trains its shard, reports a failure to rank 0 through ``errors``."""
    die_with_parent()  # rank 0 is the parent
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # rank 0 handles the stop; this process ends with it
    os.environ.update(MASTER_ADDR=MASTER_ADDR, MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from services.trainer.worker import modeling

        modeling.configure_threads(threads)
        import torch.distributed as dist

        store = dist.TCPStore(MASTER_ADDR, port, world, is_master=False, timeout=TIMEOUT)
        group = _init(rank, world, rank, threads, store=store)
        from services.trainer.worker.runner import run_job
        from services.trainer.worker.signals import StopGuard

        code = run_job(Path(job_dir), SilentSink(), StopGuard(), group=group)
    except WorkerError as exc:
        errors.put((rank, str(exc)))
        sys.exit(1)
    except BaseException as exc:  # noqa: BLE001 (any failure of a rank is the job's reason)
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        errors.put((rank, f"{type(exc).__name__}: {first}"))
        sys.exit(1)
    sys.exit(code)
