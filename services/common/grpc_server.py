"""The wiring every gRPC server of the product shares.

``serve()`` starts a ``grpc.aio`` server with the error interceptor, message size limits, the standard health
service and server reflection, and stops it gracefully on SIGTERM/SIGINT. Each service's ``server.py`` passes
the servicers it registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from services.common.errors import DomainError, InvalidArgument
from services.common.tls import TlsFiles

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
RECONNECT_BACKOFF_MAX_MS = 2000
CHANNEL_OPTIONS = [
    *SERVER_OPTIONS,
    # gRPC's default reconnect backoff grows to 120 s: after a backend was down for minutes, a client would
    # keep failing that long after it came back (browsers watching a job would see 503s). 2 s at most.
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
]
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
"""Methods that stay open when an API token is set: health checks (compose, the gateway's /healthz) and
reflection (grpcurl lists the API, calling it still needs the token)."""


MAX_ERROR_MESSAGE = 1000
MAX_VIOLATIONS = 20
MAX_VIOLATION_TEXT = 200
"""Bounds on what an error carries: it travels in trailing metadata (grpc-message and grpc-status-details-bin),
which peers refuse beyond 8-16 KiB, and a message may quote a user's value (a 1 MB name): unbounded, the
client would get RESOURCE_EXHAUSTED "Stream removed" instead of the error."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _status_for(exc: DomainError) -> grpc.Status:
    status = status_pb2.Status(code=exc.code.value[0], message=_clip(exc.message, MAX_ERROR_MESSAGE))
    if isinstance(exc, InvalidArgument):
        violations = exc.violations[:MAX_VIOLATIONS]
        if len(exc.violations) > MAX_VIOLATIONS:
            status.message = _clip("; ".join(str(v) for v in violations) +
                                   f"; and {len(exc.violations) - MAX_VIOLATIONS} more", MAX_ERROR_MESSAGE)
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=_clip(v.field, MAX_VIOLATION_TEXT),
                                                                description=_clip(v.reason, MAX_VIOLATION_TEXT))
                    for v in violations
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str):
    if isinstance(exc, DomainError):
        st = _status_for(exc)
        await context.abort(st.code, st.details, trailing_metadata=st.trailing_metadata)
    log.exception("unexpected error in %s", method, exc_info=exc)
    st = rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see the server log"))
    await context.abort(st.code, st.details, trailing_metadata=st.trailing_metadata)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns domain errors into gRPC status codes (with field violations) and anything unexpected into
    INTERNAL with a generic message and a logged traceback. The one place errors are mapped on a server."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def wrap_unary(behavior):
            async def call(request_or_iterator, context):
                try:
                    return await behavior(request_or_iterator, context)
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except BaseException as exc:  # noqa: BLE001 - mapped, logged
                    await _abort(context, exc, method)

            return call

        def wrap_stream(behavior):
            async def call(request_or_iterator, context):
                try:
                    async for item in behavior(request_or_iterator, context):
                        yield item
                except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
                    raise
                except BaseException as exc:  # noqa: BLE001 - mapped, logged
                    await _abort(context, exc, method)

            return call

        return _replace_behavior(handler, wrap_unary, wrap_stream)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (empty without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def _replace_behavior(handler, unary, stream):
    """The handler with its behavior replaced: ``unary(behavior)`` for unary responses, ``stream(behavior)``
    for streamed ones (the request side kept)."""
    ser, deser = handler.response_serializer, handler.request_deserializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), deser, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), deser, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), deser, ser)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), deser, ser)
    return handler


AUDITED = {
    "/aragora.training.v1.TrainerService/CreateJob": "job.create",
    "/aragora.training.v1.TrainerService/CloneJob": "job.clone",
    "/aragora.training.v1.TrainerService/StartJob": "job.start",
    "/aragora.training.v1.TrainerService/CancelJob": "job.cancel",
    "/aragora.training.v1.TrainerService/ReadArtifact": "artifact.download",
    "/aragora.training.v1.TrainerService/PullBaseModel": "model.pull",
    "/aragora.training.v1.TrainerService/DeleteLocalModel": "model.delete",
    "/aragora.training.v1.InferenceService/DeployJob": "job.deploy",
    "/aragora.training.v1.InferenceService/UndeployModel": "model.undeploy",
    "/aragora.training.v1.ModelExportService/StartExport": "model_export.start",
    "/aragora.training.v1.ModelExportService/CancelExport": "model_export.cancel",
    "/aragora.training.v1.ExporterService/ImportDebates": "debates.import",
    "/aragora.training.v1.ExporterService/WriteExport": "export.write",
}
"""The calls the audit log records (after they succeeded), by their action's name."""


def _audit_target(request, response) -> str:
    job = getattr(response, "job", None)
    if job is not None and getattr(job, "id", ""):
        return job.id
    parts = [str(getattr(request, f)) for f in ("job_id", "name", "model_id") if getattr(request, f, "")]
    return "/".join(parts)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Resolves the metadata ``authorization: Bearer <key>`` to a principal (UNAUTHENTICATED without a valid
    one, saying what to send), refuses a role below the method's (``services.auth.policy.RPC_ROLES``:
    PERMISSION_DENIED), makes the principal the servicer's ``policy.current()`` and records the audited calls.
    Health and reflection stay open; with auth off (no key, no token) every call passes as the local admin."""

    def __init__(self, auth) -> None:
        self.auth = auth

    async def intercept_service(self, continuation, handler_call_details):
        from services.auth import policy
        from services.auth.authn import PermissionDenied, Unauthenticated

        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES) or not self.auth.maybe_enabled():
            return handler
        header = next((v for k, v in handler_call_details.invocation_metadata or () if k.lower() == "authorization"),
                      None)
        try:
            principal = await asyncio.to_thread(self.auth.authenticate, header)
            role = policy.rpc_role(method)
            if not principal.at_least(role):
                raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs the {role} role; this key's role is "
                                       f"{principal.role}")
        except (Unauthenticated, PermissionDenied) as exc:
            denial = exc

            async def deny(request_or_iterator, context):
                await context.abort(denial.code, denial.message)

            async def deny_stream(request_or_iterator, context):
                await context.abort(denial.code, denial.message)
                yield  # pragma: no cover - a generator, like the handler it replaces

            return _replace_behavior(handler, lambda _: deny, lambda _: deny_stream)
        action = AUDITED.get(method)
        store = self.auth.store

        async def audit(request, response=None) -> None:
            if action is None or store is None or principal is policy.OPEN:
                return
            try:
                await asyncio.to_thread(store.audit, principal, action, _audit_target(request, response))
            except Exception:  # noqa: BLE001 - a failed audit write must not fail the call it records
                log.exception("could not write the audit entry %s", action)

        def unary(behavior):
            async def call(request, context):
                token = policy.set_current(principal)
                try:
                    response = await behavior(request, context)
                    await audit(request, response)
                    return response
                finally:
                    policy.reset_current(token)

            return call

        def stream(behavior):
            async def call(request, context):
                token = policy.set_current(principal)
                try:
                    async for item in behavior(request, context):
                        yield item
                    await audit(request)
                finally:
                    # A stream closed from elsewhere (the loop finalising it) runs this in another context.
                    with contextlib.suppress(ValueError):
                        policy.reset_current(token)

            return call

        return _replace_behavior(handler, unary, stream)


class _AuthClient:
    """Adds ``authorization: <authorization()>`` to a call's metadata (nothing when it returns None)."""

    def __init__(self, authorization: Callable[[], str | None]) -> None:
        self._authorization = authorization

    def _details(self, details):
        value = self._authorization()
        if value is None:
            return details
        metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()))
        metadata.add("authorization", value)
        return details._replace(metadata=metadata)


# One class per kind of call: a grpc.aio channel files each interceptor under the first kind it implements.
class _AuthUnaryUnary(_AuthClient, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AuthUnaryStream(_AuthClient, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AuthStreamUnary(_AuthClient, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _AuthStreamStream(_AuthClient, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def authorization_interceptors(authorization: Callable[[], str | None]) -> list:
    """Interceptors for a ``grpc.aio`` channel that send the ``authorization`` metadata ``authorization()``
    returns at each call (nothing when it returns None)."""
    return [kind(authorization) for kind in (_AuthUnaryUnary, _AuthUnaryStream, _AuthStreamUnary, _AuthStreamStream)]


def client_interceptors(token: str | None) -> list:
    """Interceptors for a ``grpc.aio`` channel that send ``token`` with every call (none without a token)."""
    if not token:
        return []
    value = f"Bearer {token}"
    return authorization_interceptors(lambda: value)


@dataclass
class ServiceBinding:
    """A servicer, the function that adds it to a server, and its full proto service name."""

    servicer: object
    add_to_server: Callable[[object, grpc.aio.Server], None]
    service_name: str


@dataclass
class RunningServer:
    """A started server: the port it listens on, its health servicer, and how to stop it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Clean-ups run after the server stopped taking calls (e.g. the trainer stopping its workers)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        for hook in self.on_stop:
            await hook()


async def start_server(
    bindings: Iterable[ServiceBinding], host: str = "127.0.0.1", port: int = 0, api_token: str | None = None,
    *, tls: TlsFiles | None = None, auth=None, service: str = "server",
) -> RunningServer:
    """Starts a gRPC server with the bindings, health and reflection on host:port (0 picks a free port).
    ``auth`` (a ``services.auth.authn.Authenticator``; by default one of ``api_token`` alone): with keys in its
    store or a token, every call but health and reflection needs ``authorization: Bearer <key>``. A non-loopback
    ``host`` with auth off is refused (``SystemExit`` naming the settings).
    With ``tls`` (a certificate and key), it serves TLS; with its CA too, mutual TLS (client certificates
    required and verified). Its files are checked before anything is bound (``TlsConfigError`` naming the
    setting)."""
    from services.auth.authn import Authenticator, check_exposure

    credentials = tls.server_credentials() if tls is not None else None
    auth = auth or Authenticator(None, api_token)
    check_exposure(service, host, auth)
    interceptors = [AuthInterceptor(auth)] if auth.maybe_enabled() or auth.store is not None else []
    server = grpc.aio.server(interceptors=[*interceptors, ErrorInterceptor()], options=SERVER_OPTIONS)
    bindings = list(bindings)
    for b in bindings:
        b.add_to_server(b.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.service_name for b in bindings]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = (server.add_secure_port(f"{host}:{port}", credentials) if credentials is not None
             else server.add_insecure_port(f"{host}:{port}"))
    if bound == 0:
        raise OSError(f"could not bind gRPC server to {host}:{port}")
    await server.start()
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=bound, health=health_servicer, service_names=names)


async def serve_forever(
    name: str,
    bindings: Iterable[ServiceBinding],
    host: str,
    port: int,
    grace: float = 5.0,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    api_token: str | None = None,
    *, tls: TlsFiles | None = None, auth=None,
) -> None:
    """Runs a server until SIGTERM or SIGINT, then stops it with ``grace`` seconds for calls in flight."""
    running = await start_server(bindings, host, port, api_token, tls=tls, auth=auth, service=name)
    if on_stop is not None:
        running.on_stop.append(on_stop)
    mode = ("plaintext" if tls is None or not tls.enabled
            else "mutual TLS" if tls.ca_file else "TLS")
    log.info("%s listening on %s:%d (%s)", name, host, running.port, mode)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    await running.stop(grace)
    log.info("%s stopped", name)
