"""Wires the trainer: settings, servicer, health, reflection and graceful shutdown."""

from __future__ import annotations

from aragora.training.v1 import trainer_pb2, trainer_pb2_grpc
from services.common.grpc_server import RunningServer, ServiceBinding, serve_forever, start_server
from services.trainer.config import TrainerSettings
from services.trainer.service import TrainerServicer

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


def build_bindings(settings: TrainerSettings) -> list[ServiceBinding]:
    return [ServiceBinding(TrainerServicer(), trainer_pb2_grpc.add_TrainerServiceServicer_to_server, SERVICE_NAME)]


async def start(settings: TrainerSettings, port: int | None = None) -> RunningServer:
    """Starts the trainer in this event loop (tests use port 0)."""
    return await start_server(build_bindings(settings), settings.host, settings.port if port is None else port)


async def serve(settings: TrainerSettings) -> None:
    await serve_forever("trainer", build_bindings(settings), settings.host, settings.port, settings.grace_seconds)
