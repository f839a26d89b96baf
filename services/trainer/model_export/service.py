"""ModelExportService over the export manager: converts messages; domain errors become status codes in the
shared error interceptor."""

from __future__ import annotations

import asyncio
import json

from google.protobuf.timestamp_pb2 import Timestamp

from aragora.training.v1 import model_export_pb2 as pb
from aragora.training.v1 import model_export_pb2_grpc
from services.common.errors import InvalidArgument
from services.trainer.model_export.manager import (
    CANCELLED,
    COMPLETED,
    FAILED,
    RUNNING,
    ExportEventRecord,
    ExportManager,
    ExportState,
)

KIND_NAMES = {pb.EXPORT_KIND_MERGED: "merged", pb.EXPORT_KIND_GGUF_F16: "gguf_f16",
              pb.EXPORT_KIND_GGUF_Q8_0: "gguf_q8_0"}
KIND_VALUES = {v: k for k, v in KIND_NAMES.items()}
STATUS_VALUES = {RUNNING: pb.EXPORT_STATUS_RUNNING, COMPLETED: pb.EXPORT_STATUS_COMPLETED,
                 FAILED: pb.EXPORT_STATUS_FAILED, CANCELLED: pb.EXPORT_STATUS_CANCELLED}


def kind_from_pb(kind: int) -> str:
    if kind not in KIND_NAMES:
        raise InvalidArgument(f"must be one of {', '.join(pb.ExportKind.Name(k) for k in KIND_NAMES)}", field="kind")
    return KIND_NAMES[kind]


def _ts(value) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def export_to_pb(s: ExportState) -> pb.Export:
    return pb.Export(job_id=s.job_id, kind=KIND_VALUES[s.kind], status=STATUS_VALUES[s.status], progress=s.progress,
                     phase=s.phase, error=s.error, files=s.files, size_bytes=s.size_bytes,
                     checks_json=json.dumps(s.checks) if s.checks else "", started_at=_ts(s.started_at),
                     finished_at=_ts(s.finished_at))


def event_to_pb(e: ExportEventRecord) -> pb.ExportEvent:
    return pb.ExportEvent(sequence=e.sequence, time=_ts(e.time), phase=e.phase, done=e.done, total=e.total,
                          progress=e.progress, message=e.message, status=STATUS_VALUES[e.status])


class ModelExportServicer(model_export_pb2_grpc.ModelExportServiceServicer):
    def __init__(self, manager: ExportManager) -> None:
        self.manager = manager

    async def StartExport(self, request: pb.StartExportRequest, context) -> pb.StartExportResponse:
        kind = kind_from_pb(request.kind)
        await self.manager.jobs.visible(request.job_id)
        state = await self.manager.start(request.job_id, kind)
        return pb.StartExportResponse(export=export_to_pb(state))

    async def ListExports(self, request: pb.ListExportsRequest, context) -> pb.ListExportsResponse:
        await self.manager.jobs.visible(request.job_id)
        return pb.ListExportsResponse(exports=[export_to_pb(s) for s in await self.manager.list(request.job_id)])

    async def WatchExport(self, request: pb.WatchExportRequest, context):
        if request.after_sequence < 0:
            raise InvalidArgument("must be >= 0", field="after_sequence")
        kind = kind_from_pb(request.kind)
        await self.manager.jobs.visible(request.job_id)
        async for item in self.manager.watch(request.job_id, kind, request.after_sequence):
            if isinstance(item, ExportState):
                yield pb.WatchExportResponse(snapshot=export_to_pb(item))
            else:
                yield pb.WatchExportResponse(event=event_to_pb(item))

    async def CancelExport(self, request: pb.CancelExportRequest, context) -> pb.CancelExportResponse:
        kind = kind_from_pb(request.kind)
        await self.manager.jobs.visible(request.job_id)
        # Shielded: a client giving up on the call must not leave an export process half-terminated.
        state = await asyncio.shield(self.manager.cancel(request.job_id, kind))
        return pb.CancelExportResponse(export=export_to_pb(state))


def bindings(manager: ExportManager) -> list:
    """The service's binding for the trainer's gRPC server (health and reflection list it)."""
    from services.common.grpc_server import ServiceBinding

    name = pb.DESCRIPTOR.services_by_name["ModelExportService"].full_name
    return [ServiceBinding(ModelExportServicer(manager), model_export_pb2_grpc.add_ModelExportServiceServicer_to_server,
                           name)]
