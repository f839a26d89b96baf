"""Wires the exporter: settings, servicer, health, reflection and graceful shutdown."""

from __future__ import annotations

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc
from services.common.grpc_server import RunningServer, ServiceBinding, serve_forever, start_server
from services.exporter.config import ExporterSettings
from services.exporter.service import ExporterServicer

SERVICE_NAME = exporter_pb2.DESCRIPTOR.services_by_name["ExporterService"].full_name


def build_bindings(settings: ExporterSettings) -> list[ServiceBinding]:
    return [ServiceBinding(ExporterServicer(), exporter_pb2_grpc.add_ExporterServiceServicer_to_server, SERVICE_NAME)]


async def start(settings: ExporterSettings, port: int | None = None) -> RunningServer:
    """Starts the exporter in this event loop (tests use port 0)."""
    return await start_server(build_bindings(settings), settings.host, settings.port if port is None else port)


async def serve(settings: ExporterSettings) -> None:
    await serve_forever("exporter", build_bindings(settings), settings.host, settings.port, settings.grace_seconds)
