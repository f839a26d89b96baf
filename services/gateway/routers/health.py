"""GET /healthz: each backend's standard gRPC health, as the gateway sees it."""

from __future__ import annotations

import asyncio

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import BaseModel

from services.gateway.deps import BackendsDep

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: str
    """"ok" when every backend is SERVING, "degraded" otherwise."""
    services: dict[str, str]
    """Each backend's health: SERVING, NOT_SERVING, or the gRPC error (UNAVAILABLE, ...)."""


async def _check(channel: grpc.aio.Channel, timeout: float) -> str:
    try:
        resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


@router.get("/healthz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
async def read_health(backends: BackendsDep):
    timeout = min(backends.timeout, 2.0)
    exporter, trainer = await asyncio.gather(
        _check(backends.exporter_channel, timeout), _check(backends.trainer_channel, timeout)
    )
    services = {"gateway": "SERVING", "exporter": exporter, "trainer": trainer}
    ok = all(v == "SERVING" for v in services.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "services": services}, status_code=200 if ok else 503)
