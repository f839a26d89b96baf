"""Compatibility with Aragora's own clients (repository an0mium/aragora): the ``/api/v1/training`` alias and the
rule that tells an Aragora client from a client of the user guide.

Aragora's server serves its training API under ``/api/v1/training/...`` (its SDKs call that); its frontend (the
``useFineTuning`` hook, the training pages, the admin export panel) calls ``/api/training/...`` with a bare
``fetch(url)``. Where the guide's answer and Aragora's differ (an export as a bare JSON array or as Aragora's
envelope; a cancel of an ended job; the metrics of a job still running), the gateway answers Aragora's shape to a
request that is an **Aragora client**:

- it came in under ``/api/v1/training`` (Aragora's server paths: the Python and TypeScript SDKs), or
- it states no media type (no ``Accept`` header, or only ``*/*``) *and* carries Fetch Metadata
  (``Sec-Fetch-Mode``), which a browser's or Node's ``fetch()`` adds by itself: the upstream frontend's
  ``fetch(url)`` with no headers.

Everything else gets the guide's shapes unchanged: curl and HTTP libraries (no Fetch Metadata), the dashboard
served here (it sends ``Accept: application/json``), and any client that asks for ``application/json`` or
``application/x-ndjson``. docs/aragora_clients.md lists each difference.
"""

from __future__ import annotations

from fastapi import Request

V1_PREFIX = "/api/v1/training"
GUIDE_PREFIX = "/api/training"
SCOPE_KEY = "aragora.v1"
"""Set in the ASGI scope of a request that came in under ``/api/v1/training``."""


class V1AliasMiddleware:
    """Serves ``/api/v1/training/...`` with the handlers of ``/api/training/...`` (the same routes, the same
    checks, the API token included): the path is rewritten before routing and the scope remembers it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope.get("path", "")
            if path == V1_PREFIX or path.startswith(V1_PREFIX + "/"):
                scope = dict(scope)
                scope["path"] = GUIDE_PREFIX + path[len(V1_PREFIX):]
                raw = scope.get("raw_path")
                if raw is not None and raw.startswith(V1_PREFIX.encode()):
                    scope["raw_path"] = GUIDE_PREFIX.encode() + raw[len(V1_PREFIX):]
                scope[SCOPE_KEY] = True
        await self.app(scope, receive, send)


def via_v1(request: Request) -> bool:
    return bool(request.scope.get(SCOPE_KEY))


def is_aragora_client(request: Request) -> bool:
    """Whether the request is one of Aragora's clients (see the module's docstring for the rule)."""
    if via_v1(request):
        return True
    accept = request.headers.get("accept", "").replace(" ", "")
    if accept not in ("", "*/*"):
        return False
    return "sec-fetch-mode" in request.headers


def document(app) -> None:
    """Adds the schemas of Aragora's shapes (the export envelope, its job, job list and metrics-so-far shapes),
    which the routes document in their descriptions (their response models are the guide's), to the OpenAPI
    document."""
    from services.gateway.routers.exports import AragoraStatsPublic, ExportEnvelope
    from services.gateway.routers.jobs import (
        AragoraJobPublic,
        AragoraJobsPublic,
        MetricsSoFarPublic,
    )

    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for cls in (ExportEnvelope, AragoraStatsPublic, AragoraJobPublic, AragoraJobsPublic, MetricsSoFarPublic):
            model = cls.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in model.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[cls.__name__] = model
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
