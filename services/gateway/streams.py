"""What every streaming route shares: opening a server-streaming RPC so that a refusal (unknown job, bad
request) is an HTTP error before the response starts, and writing Server-Sent Events frames."""

from __future__ import annotations

import asyncio
import json

import grpc


async def open_stream(call, first: str, what: str, timeout: float | None = None):
    """Reads the first item of ``call`` (a server-streaming RPC whose messages have a ``item`` oneof), which
    must be ``first``; the RPC's error (NOT_FOUND, INVALID_ARGUMENT...) is raised here, before any response.
    Returns that first item's ``first`` field. ``what`` names the stream in the error when it starts wrongly."""
    try:
        item = await (asyncio.wait_for(call.read(), timeout) if timeout else call.read())
    except BaseException:
        call.cancel()
        raise
    if item is grpc.aio.EOF or item.WhichOneof("item") != first:
        call.cancel()
        raise grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   details=f"the trainer's {what} did not start with `{first}`")
    return getattr(item, first)


def sse_frame(event: str, data: dict | str, id: int | None = None) -> str:
    """One SSE frame; ``data`` is JSON text already, or a dict written as compact JSON."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n"
