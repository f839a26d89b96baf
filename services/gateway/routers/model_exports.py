"""Merge and export routes (served by the trainer's ModelExportService over gRPC): start an export of a completed
job, list its exports, follow one's progress as Server-Sent Events, cancel it.

The files an export writes are ordinary job artifacts (``export/merged/...``, ``export/<job name>-f16.gguf``):
they appear in ``GET /api/training/jobs/{id}/artifacts`` and download (resumably, with ``Range``) through
``GET /api/training/jobs/{id}/artifacts/{name}``. See docs/model_export.md.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from aragora.training.v1 import model_export_pb2 as pb
from aragora.training.v1 import model_export_pb2_grpc
from services.gateway.deps import TimeoutDep
from services.gateway.routers.jobs import JobId
from services.gateway.streams import open_stream, sse_frame

router = APIRouter(prefix="/api/training", tags=["exports of models"])

KEEPALIVE_SECONDS = 15.0
ExportKindName = Literal["merged", "gguf_f16", "gguf_q8_0"]
KIND_VALUES = {"merged": pb.EXPORT_KIND_MERGED, "gguf_f16": pb.EXPORT_KIND_GGUF_F16,
               "gguf_q8_0": pb.EXPORT_KIND_GGUF_Q8_0}
KIND_NAMES = {v: k for k, v in KIND_VALUES.items()}
STATUS_NAMES = {pb.EXPORT_STATUS_RUNNING: "running", pb.EXPORT_STATUS_COMPLETED: "completed",
                pb.EXPORT_STATUS_FAILED: "failed", pb.EXPORT_STATUS_CANCELLED: "cancelled"}
Kind = Annotated[ExportKindName, Path(description="merged, gguf_f16 or gguf_q8_0")]


def _stub(request: Request) -> model_export_pb2_grpc.ModelExportServiceStub:
    return model_export_pb2_grpc.ModelExportServiceStub(request.app.state.backends.trainer_channel)


class ExportCreate(BaseModel):
    """What to export."""

    model_config = ConfigDict(strict=True, extra="forbid")

    kind: ExportKindName = Field(description="merged (base + adapter in one model), gguf_f16 or gguf_q8_0 (for "
                                             "llama.cpp / Ollama; merges first when needed)")


class ExportPublic(BaseModel):
    job_id: str
    kind: ExportKindName
    status: Literal["running", "completed", "failed", "cancelled"]
    progress: float
    phase: str
    error: str | None
    files: list[str]
    """Artifact names, downloadable from /api/training/jobs/{id}/artifacts/{name}."""
    size_bytes: int
    checks: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None


class ExportsPublic(BaseModel):
    job_id: str
    exports: list[ExportPublic]


def _ts(msg, name: str) -> datetime | None:
    return getattr(msg, name).ToDatetime(tzinfo=UTC) if msg.HasField(name) else None


def export_public(e: pb.Export) -> ExportPublic:
    return ExportPublic(job_id=e.job_id, kind=KIND_NAMES[e.kind], status=STATUS_NAMES[e.status], progress=e.progress,
                        phase=e.phase, error=e.error or None, files=list(e.files), size_bytes=e.size_bytes,
                        checks=json.loads(e.checks_json) if e.checks_json else {}, started_at=_ts(e, "started_at"),
                        finished_at=_ts(e, "finished_at"))


def event_data(e: pb.ExportEvent) -> dict:
    return {"sequence": e.sequence, "time": e.time.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
            "phase": e.phase, "done": e.done, "total": e.total, "progress": e.progress, "message": e.message,
            "status": STATUS_NAMES.get(e.status)}


@router.post("/jobs/{job_id}/exports", response_model=ExportPublic, status_code=202)
async def start_export(job_id: JobId, body: ExportCreate, request: Request, timeout: TimeoutDep) -> ExportPublic:
    """Starts an export of a completed job in the background (202, ``running``). 404 unknown job; 409 for a job
    that did not complete (naming its status) or while an export of the job runs; 422 for an unknown kind."""
    resp = await _stub(request).StartExport(pb.StartExportRequest(job_id=job_id, kind=KIND_VALUES[body.kind]),
                                            timeout=timeout)
    return export_public(resp.export)


@router.get("/jobs/{job_id}/exports", response_model=ExportsPublic)
async def list_exports(job_id: JobId, request: Request, timeout: TimeoutDep) -> ExportsPublic:
    """The job's exports (one per kind ever started), with status, progress, files and check figures."""
    resp = await _stub(request).ListExports(pb.ListExportsRequest(job_id=job_id), timeout=timeout)
    return ExportsPublic(job_id=job_id, exports=[export_public(e) for e in resp.exports])


@router.get("/jobs/{job_id}/exports/{kind}", response_model=ExportPublic)
async def read_export(job_id: JobId, kind: Kind, request: Request, timeout: TimeoutDep) -> ExportPublic:
    """One export. 404 when that kind was never started for the job."""
    resp = await _stub(request).ListExports(pb.ListExportsRequest(job_id=job_id), timeout=timeout)
    for e in resp.exports:
        if KIND_NAMES.get(e.kind) == kind:
            return export_public(e)
    raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(),
                               details=f"job {job_id} has no {kind} export (start one first)")


@router.delete("/jobs/{job_id}/exports/{kind}", response_model=ExportPublic)
async def cancel_export(job_id: JobId, kind: Kind, request: Request, timeout: TimeoutDep) -> ExportPublic:
    """Cancels a running export: its process ends, its half-written files are removed (``cancelled``). 409 for
    an export that is not running."""
    resp = await _stub(request).CancelExport(pb.CancelExportRequest(job_id=job_id, kind=KIND_VALUES[kind]),
                                             timeout=timeout + 10)
    return export_public(resp.export)


@router.get(
    "/jobs/{job_id}/exports/{kind}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The export's progress as SSE"}},
)
async def read_export_events(
    job_id: JobId, kind: Kind, request: Request, timeout: TimeoutDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="Resume after this sequence number")] = 0,
) -> StreamingResponse:
    """Streams an export's progress: ``snapshot`` (the export), then ``progress`` events (``id`` = sequence;
    phase, done, total, progress, message), then ``end`` once it is no longer running."""
    call = _stub(request).WatchExport(pb.WatchExportRequest(job_id=job_id, kind=KIND_VALUES[kind],
                                                            after_sequence=after))
    snapshot = await open_stream(call, "snapshot", "export watch", timeout)

    async def stream():
        status = STATUS_NAMES.get(snapshot.status)
        pending: asyncio.Task | None = None
        try:
            yield sse_frame("snapshot", export_public(snapshot).model_dump_json())
            while True:
                pending = pending or asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
                if not done:
                    yield ": keepalive\n\n"
                    continue
                try:
                    msg = pending.result()
                except grpc.aio.AioRpcError:
                    return  # the trainer went away: no `end`, the client reconnects with ?after=
                finally:
                    pending = None
                if msg is grpc.aio.EOF:
                    break
                if msg.WhichOneof("item") == "event":
                    data = event_data(msg.event)
                    status = data["status"] or status
                    yield sse_frame("progress", data, id=msg.event.sequence)
            if status != "running":
                yield sse_frame("end", {"job_id": job_id, "kind": kind, "status": status})
        finally:
            if pending is not None:
                pending.cancel()
            call.cancel()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
