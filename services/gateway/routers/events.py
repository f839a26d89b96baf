"""Live job progress for browsers: Server-Sent Events from the trainer's WatchJob stream.

``GET /api/training/jobs/{id}/events`` sends ``event: snapshot`` (the job, no id) first, then each job event as
``id: <sequence>`` / ``event: <type>`` / ``data: <JSON>``, and ``event: end`` once the job is terminal. A client
reconnecting with ``Last-Event-ID`` (browsers do this by themselves) or ``?after=N`` gets exactly the events
after that sequence. When the trainer goes away mid-stream the response just ends (no ``end``), so an
EventSource reconnects and resumes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Annotated

import grpc
from fastapi import APIRouter, Header, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from aragora.training.v1 import trainer_pb2 as pb
from services.gateway.deps import TimeoutDep, TrainerDep
from services.gateway.routers.jobs import STATUS_NAMES, JobId, job_public
from services.gateway.streams import open_stream, sse_frame

router = APIRouter(prefix="/api/training", tags=["events"])

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 2000
EVENT_NAMES = {
    pb.EVENT_TYPE_STATUS: "status",
    pb.EVENT_TYPE_STEP: "step",
    pb.EVENT_TYPE_CHECKPOINT: "checkpoint",
    pb.EVENT_TYPE_EVAL: "eval",
    pb.EVENT_TYPE_LOG: "log",
    pb.EVENT_TYPE_WARNING: "warning",
    pb.EVENT_TYPE_ERROR: "error",
    pb.EVENT_TYPE_DOWNLOAD: "download",
}
TERMINAL = {"completed", "failed", "cancelled"}


def event_data(e: pb.JobEvent) -> dict:
    """A job event as the SSE ``data`` JSON: sequence, time, type, message and the kind's fields."""
    out = {
        "sequence": e.sequence,
        "time": e.time.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "type": EVENT_NAMES.get(e.type, "log"),
        "message": e.message,
    }
    kind = e.WhichOneof("payload")
    if kind == "status_change":
        s = e.status_change
        out.update(from_status=STATUS_NAMES.get(s.from_status), to_status=STATUS_NAMES.get(s.to_status),
                   reason=s.reason)
    elif kind == "step":
        s = e.step
        out.update(epoch=s.epoch, step=s.step, total_steps=s.total_steps, loss=s.loss, learning_rate=s.learning_rate,
                   examples_seen=s.examples_seen, tokens_per_second=s.tokens_per_second, progress=s.progress,
                   extra=dict(s.extra))
    elif kind == "checkpoint":
        out.update(path=e.checkpoint.path, step=e.checkpoint.step)
    elif kind == "download":
        d = e.download
        out.update(model=d.model, phase=d.phase, files_done=d.files_done, files_total=d.files_total,
                   bytes_done=d.bytes_done, bytes_total=d.bytes_total, bytes_per_second=d.bytes_per_second,
                   eta_seconds=d.eta_seconds if d.HasField("eta_seconds") else None, file=d.file)
    elif kind == "eval":
        out.update(phase=e.eval.phase, done=e.eval.done, total=e.eval.total, metrics=dict(e.eval.metrics))
    return out


def _bad_header(reason: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("header", "Last-Event-ID"), "msg": reason, "type": "value_error"}])


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The job's events as Server-Sent Events"}},
)
async def read_job_events(
    job_id: JobId,
    trainer: TrainerDep,
    timeout: TimeoutDep,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="Resume after this sequence number")] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this sequence")
    ] = None,
) -> StreamingResponse:
    """Streams a job's progress: ``snapshot``, then ``status|step|checkpoint|eval|log|warning|error`` events
    with their sequence as ``id``, then ``end`` when the job is terminal. 404 for an unknown job."""
    resume = after or 0
    if last_event_id is not None and last_event_id.strip():
        # The browser's own reconnection header is newer than whatever ?after= the page was opened with.
        value = last_event_id.strip()
        if not value.isdigit() or len(value) > 18:
            raise _bad_header("must be a non-negative event sequence number")
        resume = int(value)

    call = trainer.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=resume))
    # The snapshot (or the error: unknown job -> 404) before the response starts.
    snapshot = await open_stream(call, "snapshot", "watch", timeout)

    async def stream():
        status = STATUS_NAMES.get(snapshot.status)
        pending: asyncio.Task | None = None
        try:
            yield f"retry: {RETRY_MS}\n\n" + sse_frame("snapshot", job_public(snapshot).model_dump_json())
            while True:
                pending = pending or asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
                if not done:
                    yield ": keepalive\n\n"  # keeps proxies from closing a quiet stream
                    continue
                try:
                    msg = pending.result()
                except grpc.aio.AioRpcError as exc:
                    # The trainer went away: end without `end`, so the client reconnects and resumes.
                    yield f": trainer {exc.code().name.lower()}: {(exc.details() or '').splitlines()[0][:200]}\n\n"
                    return
                finally:
                    pending = None
                if msg is grpc.aio.EOF:
                    break
                if msg.WhichOneof("item") != "event":
                    continue
                data = event_data(msg.event)
                if data["type"] == "status" and data.get("to_status"):
                    status = data["to_status"]
                yield sse_frame(data["type"], data, id=msg.event.sequence)
            if status in TERMINAL:
                yield sse_frame("end", {"job_id": job_id, "status": status})
        finally:
            if pending is not None:
                pending.cancel()
            call.cancel()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )
