"""``python -m services.trainer watch JOB_ID``: a live progress bar of one job from the trainer's WatchJob.

The bar shows the step out of the total, the epoch, the latest loss and tqdm's ETA; status changes, warnings
and errors are printed above it. If the connection drops, the watch reconnects and resumes after the last
event it saw. Exit status: 0 when the job completed, 1 when it failed or was cancelled, 2 when it could not be
watched (unknown job, trainer unreachable).
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.common.grpc_server import CHANNEL_OPTIONS, client_interceptors
from services.common.tls import TlsConfigError, TlsFiles, aio_channel

STATUS = {v: k.removeprefix("JOB_STATUS_").lower() for k, v in pb.JobStatus.items()}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


async def watch(address: str, job_id: str, after: int = 0, retry_seconds: float = 30.0, file=None,
                token: str | None = None, tls: TlsFiles | None = None) -> int:
    """Draws the job's progress until it ends; returns the exit status (see the module docstring)."""
    from tqdm import tqdm

    file = file or sys.stderr
    bar = tqdm(total=0, unit="step", desc=job_id, file=file, dynamic_ncols=True, leave=True)
    status = ""
    name = job_id
    last = after
    give_up_at = None
    try:
        while True:
            try:
                async with aio_channel(address, tls, CHANNEL_OPTIONS, client_interceptors(token)) as channel:
                    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
                    async for item in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=last)):
                        give_up_at = None
                        if item.WhichOneof("item") == "snapshot":
                            job = item.snapshot
                            status, name = STATUS[job.status], job.name or job_id
                            bar.set_description(f"{name} [{status}]")
                            if job.total_steps:
                                bar.total = job.total_steps
                            bar.n = job.current_step
                            postfix = {"epoch": job.current_epoch}
                            if job.HasField("loss"):
                                postfix["loss"] = f"{job.loss:.4f}"
                            bar.set_postfix(postfix, refresh=True)
                            continue
                        event = item.event
                        last = event.sequence
                        kind = event.WhichOneof("payload")
                        if kind == "step":
                            s = event.step
                            if s.total_steps and bar.total != s.total_steps:
                                bar.total = s.total_steps
                            bar.update(max(0, s.step - bar.n))
                            bar.set_postfix({"epoch": f"{s.epoch:.2f}", "loss": f"{s.loss:.4f}"}, refresh=True)
                        elif kind == "status_change":
                            status = STATUS[event.status_change.to_status]
                            bar.set_description(f"{name} [{status}]")
                            bar.write(f"status: {status}" + (f" ({event.status_change.reason})"
                                                              if event.status_change.reason else ""), file=file)
                        elif event.type in (pb.EVENT_TYPE_WARNING, pb.EVENT_TYPE_ERROR):
                            label = "warning" if event.type == pb.EVENT_TYPE_WARNING else "error"
                            bar.write(f"{label}: {event.message}", file=file)
                        elif kind == "checkpoint":
                            bar.write(f"checkpoint: {event.checkpoint.path}", file=file)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    bar.write(f"cannot watch {job_id}: {exc.details()}", file=file)
                    return 2
                loop = asyncio.get_running_loop()
                give_up_at = give_up_at or loop.time() + retry_seconds
                if loop.time() >= give_up_at:
                    bar.write(f"trainer at {address} unreachable: {exc.details()}", file=file)
                    return 2
                await asyncio.sleep(1.0)
    finally:
        bar.close()
    print(f"{job_id}: {status}", file=file)
    return 0 if status == "completed" else 1 if status in ("failed", "cancelled") else 2


def main(job_id: str, address: str, after: int = 0) -> int:
    try:
        from services.trainer.config import TrainerSettings

        settings = TrainerSettings()
        return asyncio.run(watch(address, job_id, after, token=settings.api_token,
                                 tls=TlsFiles.from_settings(settings)))
    except TlsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Leaving the watch never touches the job.
        return 130
