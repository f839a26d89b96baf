"""The gateway's FastAPI app: REST (and SSE) in front of the exporter and trainer gRPC services."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from services.auth.authn import Authenticator
from services.auth.store import KeyStore
from services.gateway import auth, compat, errors
from services.gateway.config import GatewaySettings
from services.gateway.deps import Backends
from services.gateway.routers import (
    admin,
    dashboard,
    debates,
    events,
    exports,
    generate,
    health,
    jobs,
    model_exports,
    models,
    openai_compat,
)
from services.gateway.routers import compat as compat_routes


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
        description=(
            "Turns debate outcomes into training data, runs LoRA fine-tuning jobs and streams them live.\n\n"
            "Every `/api/training/...` route is also served as `/api/v1/training/...` (Aragora's server paths, "
            "for its SDKs). Aragora's own clients get Aragora's shapes where they differ from the guide's: see "
            "docs/aragora_clients.md and the `ExportEnvelope` schema."
        ),
        lifespan=lifespan,
        dependencies=[Depends(auth.authorize)],
    )
    app.state.settings = settings
    app.state.auth = Authenticator(KeyStore(settings.auth_database_url), settings.api_token)
    app.add_middleware(auth.AuthMiddleware, auth=app.state.auth)
    app.add_middleware(compat.V1AliasMiddleware)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(exports.router)
    app.include_router(debates.router)
    app.include_router(jobs.router)
    app.include_router(compat_routes.router)
    app.include_router(events.router)
    app.include_router(model_exports.router)
    app.include_router(models.router)
    app.include_router(generate.router)
    app.include_router(openai_compat.router)
    app.include_router(admin.router)
    app.include_router(dashboard.router)
    compat.document(app)
    return app
