"""The gateway's FastAPI app: REST (and SSE) in front of the exporter and trainer gRPC services."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway import errors
from services.gateway.config import GatewaySettings
from services.gateway.deps import Backends
from services.gateway.routers import dashboard, debates, events, exports, health, jobs, models


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.backends = Backends.open(settings)
        try:
            yield
        finally:
            await app.state.backends.close()

    app = FastAPI(
        title="Aragora fine-tuning gateway",
        version="1.0.0",
        description="Turns debate outcomes into training data, runs LoRA fine-tuning jobs and streams them live.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.include_router(health.router)
    app.include_router(exports.router)
    app.include_router(debates.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(models.router)
    app.include_router(dashboard.router)
    return app
