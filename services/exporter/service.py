"""The exporter's gRPC servicer: converts messages and delegates to the logic beside it."""

from __future__ import annotations

import grpc

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc
from services.exporter import formats


async def _unimplemented(context: grpc.aio.ServicerContext, rpc: str) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"ExporterService.{rpc} is not implemented yet")


class ExporterServicer(exporter_pb2_grpc.ExporterServiceServicer):
    """ExporterService over the debate store."""

    async def GetFormats(self, request, context):
        return exporter_pb2.GetFormatsResponse(
            formats=[exporter_pb2.FormatDescription(**f) for f in formats.describe_formats()]
        )

    async def ImportDebates(self, request_iterator, context):
        await _unimplemented(context, "ImportDebates")

    async def ExportSFT(self, request, context):
        await _unimplemented(context, "ExportSFT")
        yield  # pragma: no cover - makes this an async generator

    async def ExportDPO(self, request, context):
        await _unimplemented(context, "ExportDPO")
        yield  # pragma: no cover

    async def ExportGauntlet(self, request, context):
        await _unimplemented(context, "ExportGauntlet")
        yield  # pragma: no cover

    async def WriteExport(self, request, context):
        await _unimplemented(context, "WriteExport")

    async def GetExportStats(self, request, context):
        await _unimplemented(context, "GetExportStats")
