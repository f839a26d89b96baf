"""The gateway's dependencies as Annotated aliases: the backends' stubs and the per-call deadline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import grpc
from fastapi import Depends, Request

from aragora.training.v1 import exporter_pb2_grpc, trainer_pb2_grpc
from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.tls import TlsFiles, aio_channel
from services.gateway.auth import forward
from services.gateway.config import GatewaySettings


@dataclass
class Backends:
    """The gRPC channels the gateway opens once (in the app's lifespan) and the stubs over them."""

    settings: GatewaySettings
    exporter_channel: grpc.aio.Channel
    trainer_channel: grpc.aio.Channel

    @classmethod
    def open(cls, settings: GatewaySettings) -> Backends:
        # Every call carries the caller's key (else the gateway's api_token): the backends decide with it.
        interceptors = forward(settings.api_token)
        # With TLS settings, TLS (mutual TLS with a client certificate) to both backends.
        tls = TlsFiles.from_settings(settings)
        return cls(
            settings,
            aio_channel(settings.exporter_address, tls, CHANNEL_OPTIONS, interceptors),
            aio_channel(settings.trainer_address, tls, CHANNEL_OPTIONS, interceptors),
        )

    @property
    def exporter(self) -> exporter_pb2_grpc.ExporterServiceStub:
        return exporter_pb2_grpc.ExporterServiceStub(self.exporter_channel)

    @property
    def trainer(self) -> trainer_pb2_grpc.TrainerServiceStub:
        return trainer_pb2_grpc.TrainerServiceStub(self.trainer_channel)

    @property
    def timeout(self) -> float:
        return self.settings.rpc_timeout_seconds

    async def close(self) -> None:
        await self.exporter_channel.close()
        await self.trainer_channel.close()


def get_backends(request: Request) -> Backends:
    return request.app.state.backends


def get_exporter(request: Request) -> exporter_pb2_grpc.ExporterServiceStub:
    return request.app.state.backends.exporter


def get_trainer(request: Request) -> trainer_pb2_grpc.TrainerServiceStub:
    return request.app.state.backends.trainer


def get_timeout(request: Request) -> float:
    return request.app.state.backends.timeout


BackendsDep = Annotated[Backends, Depends(get_backends)]
ExporterDep = Annotated[exporter_pb2_grpc.ExporterServiceStub, Depends(get_exporter)]
TrainerDep = Annotated[trainer_pb2_grpc.TrainerServiceStub, Depends(get_trainer)]
TimeoutDep = Annotated[float, Depends(get_timeout)]
