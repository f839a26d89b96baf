"""The gateway's one error mapping: gRPC status codes to HTTP status codes, and one exception handler.

A backend's INVALID_ARGUMENT carries its bad fields (google.rpc.BadRequest); they become the JSON body's
``errors`` list, so a client sees which field is wrong and why. Every error body also carries ``error``, the same
text as ``detail``: Aragora's own clients (the useFineTuning hook, its pages and SDKs) show ``body.error``.
"""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.errors import DomainError

log = logging.getLogger(__name__)

GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    # The backend failed: the gateway reports a bad gateway, never a 500 of its own.
    grpc.StatusCode.INTERNAL: 502,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.DATA_LOSS: 502,
}


def field_errors(exc: grpc.aio.AioRpcError) -> list[dict]:
    """The field violations a backend attached to its error, as ``[{"field", "reason"}]``."""
    try:
        status = rpc_status.from_call(exc)
    except Exception:  # noqa: BLE001 - a malformed detail must not hide the error itself
        return []
    out: list[dict] = []
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out.extend({"field": v.field, "reason": v.description} for v in br.field_violations)
    return out


def body(detail: str, code: str, errors: list[dict] | None = None) -> dict:
    """The one error body: ``{detail, code, errors, error}`` (``error`` repeats ``detail`` for Aragora's
    clients, which read that key)."""
    out: dict = {"detail": detail, "code": code}
    if errors:
        out["errors"] = errors
    out["error"] = detail
    return out


def response(status: int, detail: str, code: str, errors: list[dict] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body(detail, code, errors), status_code=status, headers=headers)


def error_body(exc: grpc.aio.AioRpcError) -> tuple[int, dict]:
    code = exc.code()
    http = GRPC_TO_HTTP.get(code, 502)
    return http, body(exc.details() or code.name.lower(), code.name, field_errors(exc))


async def _grpc_error_handler(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    http, body = error_body(exc)
    if http >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.code().name, exc.details())
    return JSONResponse(body, status_code=http)


async def _domain_error_handler(request: Request, exc: DomainError) -> JSONResponse:
    """A domain error the gateway raised itself (its own routes over a store: the admin's keys), by the same
    table as a backend's status."""
    violations = [{"field": v.field, "reason": v.reason} for v in getattr(exc, "violations", ())]
    return response(GRPC_TO_HTTP.get(exc.code, 502), exc.message, exc.code.name, violations)


def _field_path(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)


async def _validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The gateway's own validation errors, in the same body shape as a backend's INVALID_ARGUMENT."""
    errors = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid value"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        errors.append({"field": _field_path(err.get("loc", ())), "reason": msg})
    detail = "; ".join(f"{e['field']}: {e['reason']}" if e["field"] else e["reason"] for e in errors)
    return response(422, detail or "invalid request", "INVALID_ARGUMENT", errors)


HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "METHOD_NOT_ALLOWED", 409: "FAILED_PRECONDITION", 413: "RESOURCE_EXHAUSTED",
              415: "INVALID_ARGUMENT", 422: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED"}


async def _http_error_handler(request: Request, exc: StarletteHTTPException):
    """FastAPI's own errors (an unknown route, a wrong method): under /api/ in the one body, under /v1/ in
    OpenAI's shape; elsewhere (the dashboard's pages) FastAPI's default answer."""
    if request.url.path.startswith("/v1/"):
        # The OpenAI-compatible surface (an unknown route, a model id that matches no route): OpenAI's shape.
        from services.gateway.routers.openai_compat import openai_error

        return openai_error(exc.status_code, exc.detail if isinstance(exc.detail, str) else str(exc.detail))
    if not request.url.path.startswith("/api/"):
        return await http_exception_handler(request, exc)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return response(exc.status_code, detail, HTTP_CODES.get(exc.status_code, "UNKNOWN"),
                    headers=getattr(exc, "headers", None))


class ErrorField(BaseModel):
    field: str
    """The bad field's dotted path (``training_config.lora_r``), or "" when the error is not one field's."""
    reason: str


class ErrorBody(BaseModel):
    """Every error response of /api/: what went wrong, the gRPC-style code, and the bad fields if any."""

    detail: str
    code: str
    """INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, UNAUTHENTICATED, UNAVAILABLE, ..."""
    errors: list[ErrorField] = []
    error: str = ""
    """The same text as ``detail``, for Aragora's clients (they show ``body.error``)."""


def _document_errors(app: FastAPI) -> None:
    """Makes the OpenAPI schema tell the truth about errors: FastAPI documents its own 422 body
    (``detail`` as a list), the gateway answers ``ErrorBody`` for 422 and every other error of /api/."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorField, ErrorBody):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            model_schema.pop("$defs", None)  # each model is its own component
            schemas[model.__name__] = model_schema
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = {"description": "Invalid request", "content": error}
                if path.startswith("/api/"):
                    responses.setdefault("default", {"description": "Error", "content": error})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def install(app: FastAPI) -> None:
    app.add_exception_handler(grpc.aio.AioRpcError, _grpc_error_handler)
    app.add_exception_handler(DomainError, _domain_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    _document_errors(app)
