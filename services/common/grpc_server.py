"""The wiring every gRPC server of the product shares.

``serve()`` starts a ``grpc.aio`` server with the error interceptor, message size limits, the standard health
service and server reflection, and stops it gracefully on SIGTERM/SIGINT. Each service's ``server.py`` passes
the servicers it registers.
"""

from __future__ import annotations

import asyncio
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

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
CHANNEL_OPTIONS = SERVER_OPTIONS


def _status_for(exc: DomainError) -> grpc.Status:
    status = status_pb2.Status(code=exc.code.value[0], message=exc.message)
    if isinstance(exc, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.reason)
                    for v in exc.violations
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

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler


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
    bindings: Iterable[ServiceBinding], host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Starts a gRPC server with the bindings, health and reflection on host:port (0 picks a free port)."""
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=SERVER_OPTIONS)
    bindings = list(bindings)
    for b in bindings:
        b.add_to_server(b.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.service_name for b in bindings]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
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
) -> None:
    """Runs a server until SIGTERM or SIGINT, then stops it with ``grace`` seconds for calls in flight."""
    running = await start_server(bindings, host, port)
    if on_stop is not None:
        running.on_stop.append(on_stop)
    log.info("%s listening on %s:%d", name, host, running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    await running.stop(grace)
    log.info("%s stopped", name)
