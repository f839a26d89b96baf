"""The gateway's FastAPI app: REST (and SSE) in front of the exporter and trainer gRPC services."""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway import compat, errors
from services.gateway.config import GatewaySettings
from services.gateway.deps import Backends
from services.gateway.routers import compat as compat_routes
from services.gateway.routers import (
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


class ApiTokenMiddleware:
    """With ``GATEWAY_API_TOKEN`` set, every ``/api/`` request needs ``Authorization: Bearer <token>``: else 401
    in the usual error body (and ``WWW-Authenticate``). The dashboard pages and their assets, /healthz, /docs and
    /openapi.json stay open so the page can load and ask for the token. Pure ASGI: streams pass untouched."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/api" or path.startswith(("/api/", "/v1/")):  # /v1: the OpenAI-compatible routes
            got = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
            if got is None or not hmac.compare_digest(got, self._expected):
                reason = "invalid API token" if got is not None else "missing API token"
                response = errors.response(
                    401, f"{reason}: send the header 'Authorization: Bearer <token>'", "UNAUTHENTICATED",
                    [{"field": "Authorization", "reason": reason}], headers={"WWW-Authenticate": 'Bearer realm="api"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
    )
    app.state.settings = settings
    if settings.api_token:
        app.add_middleware(ApiTokenMiddleware, token=settings.api_token)
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
    app.include_router(dashboard.router)
    compat.document(app)
    return app
