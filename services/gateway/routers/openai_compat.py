"""An OpenAI-compatible surface, so existing applications and the official ``openai`` client work unchanged
with ``base_url`` pointed at ``http://<gateway>/v1``.

- ``GET /v1/models``, ``GET /v1/models/{id}``: the available base models and the deployments.
- ``POST /v1/chat/completions``: ``stream`` false gives a ``chat.completion``; true gives
  ``chat.completion.chunk`` Server-Sent Events (``data: {...}``) ending with ``data: [DONE]``.
  ``model`` is a deployment name, a job id or a base model id. Supported: ``messages`` (text content, or
  text parts), ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``,
  ``n`` = 1, ``stream_options.include_usage``; other OpenAI fields are accepted and ignored.

Errors come in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aragora.training.v1 import inference_pb2 as ipb
from aragora.training.v1 import trainer_pb2 as pb
from services.gateway.errors import GRPC_TO_HTTP, field_errors
from services.gateway.routers.generate import FINISH_NAMES, SSE_HEADERS, inference_stub, open_generation, remaining

router = APIRouter(prefix="/v1", tags=["openai"])

OPENAI_FIELDS = {"sampling.max_new_tokens": "max_tokens", "sampling.temperature": "temperature",
                 "sampling.top_p": "top_p", "sampling.stop": "stop", "model": "model", "messages": "messages"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               409: "invalid_request_error", 429: "rate_limit_error"}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=300)
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0, le=2**31 - 1)
    max_completion_tokens: int | None = Field(None, ge=0, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                                   "param": param, "code": code}}, status_code=status)


def _from_grpc(exc: grpc.aio.AioRpcError) -> JSONResponse:
    status = GRPC_TO_HTTP.get(exc.code(), 502)
    if status == 422:
        status = 400  # OpenAI answers bad parameters with 400
    fields = field_errors(exc)
    param = OPENAI_FIELDS.get(fields[0]["field"], fields[0]["field"]) if fields else None
    message = exc.details() or exc.code().name.lower()
    for f in fields:
        message = message.replace(f["field"], OPENAI_FIELDS.get(f["field"], f["field"]))
    code = {404: "model_not_found"}.get(status) or exc.code().name.lower()
    return openai_error(status, message, param, code)


# -- models ----------------------------------------------------------------------------------------------------


async def _models(request: Request) -> list[dict]:
    backends = request.app.state.backends
    bases = await backends.trainer.ListBaseModels(pb.ListBaseModelsRequest(), timeout=backends.timeout)
    deployed = await inference_stub(request).ListDeployments(ipb.ListDeploymentsRequest(), timeout=backends.timeout)
    out = [{"id": m.id, "object": "model", "created": 0, "owned_by": m.provider or "local"}
           for m in bases.models if m.available]
    out += [{"id": d.name, "object": "model", "created": int(d.created_at.seconds), "owned_by": "aragora",
             "root": d.base_model, "parent": d.base_model, "job_id": d.job_id} for d in deployed.deployments]
    return out


@router.get("/models")
async def list_models(request: Request):
    """The base models available on the trainer and the deployed adapters, as OpenAI's model list."""
    try:
        return {"object": "list", "data": await _models(request)}
    except grpc.aio.AioRpcError as exc:
        return _from_grpc(exc)


@router.get("/models/{model_id:path}")
async def read_model(model_id: str, request: Request):
    """One model of the list; 404 in OpenAI's error shape when unknown."""
    try:
        models = await _models(request)
    except grpc.aio.AioRpcError as exc:
        return _from_grpc(exc)
    for m in models:
        if m["id"] == model_id:
            return m
    return openai_error(404, f"The model '{model_id}' does not exist", "model", "model_not_found")


# -- chat completions ------------------------------------------------------------------------------------------


def _grpc_request(body: ChatCompletionRequest) -> ipb.GenerateRequest:
    sampling = ipb.SamplingParams(max_new_tokens=body.max_completion_tokens or body.max_tokens or 0)
    if body.temperature is not None:
        sampling.temperature = body.temperature
    if body.top_p is not None:
        sampling.top_p = body.top_p
    if body.seed is not None:
        sampling.seed = body.seed
    if body.stop:
        sampling.stop.extend([body.stop] if isinstance(body.stop, str) else body.stop)
    messages = [ipb.ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
                for m in body.messages]
    return ipb.GenerateRequest(model=body.model, messages=messages, sampling=sampling)


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _finish(reason: int) -> str:
    name = FINISH_NAMES.get(reason, "stop")
    return "length" if name == "length" else "stop"


@router.post("/chat/completions")
async def chat_completions(request: Request):
    """OpenAI's chat completions over the trainer's Generate (``stream`` true: SSE chunks, then
    ``data: [DONE]``)."""
    try:
        raw: Any = await request.json()
    except ValueError:
        return openai_error(400, "the body must be JSON", None, "invalid_json")
    try:
        body = ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err.get("loc", ()))
        return openai_error(400, f"{param}: {err.get('msg', 'invalid value')}", param, "invalid_value")

    try:
        call, _ = await open_generation(inference_stub(request), _grpc_request(body))
    except grpc.aio.AioRpcError as exc:
        return _from_grpc(exc)
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    if not body.stream:
        try:
            finished = None
            async for item in remaining(call):
                if item.WhichOneof("item") == "finished":
                    finished = item.finished
        except grpc.aio.AioRpcError as exc:
            return _from_grpc(exc)
        finally:
            call.cancel()
        if finished is None:
            return openai_error(502, "the generation ended without a result", None, "bad_gateway")
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": finished.text, "refusal": None},
                         "logprobs": None, "finish_reason": _finish(finished.finish_reason)}],
            "usage": {"prompt_tokens": finished.prompt_tokens, "completion_tokens": finished.completion_tokens,
                      "total_tokens": finished.prompt_tokens + finished.completion_tokens},
        }

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def chunks():
        try:
            yield _chunk(cid, created, body.model, {"role": "assistant", "content": ""})
            async for item in remaining(call):
                kind = item.WhichOneof("item")
                if kind == "delta" and item.delta.text:
                    yield _chunk(cid, created, body.model, {"content": item.delta.text})
                elif kind == "finished":
                    f = item.finished
                    yield _chunk(cid, created, body.model, {}, _finish(f.finish_reason))
                    if include_usage:
                        usage = {"prompt_tokens": f.prompt_tokens, "completion_tokens": f.completion_tokens,
                                 "total_tokens": f.prompt_tokens + f.completion_tokens}
                        data = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                "model": body.model, "choices": [], "usage": usage}
                        yield f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
            yield "data: [DONE]\n\n"
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                error = {"error": {"message": exc.details() or exc.code().name.lower(), "type": "server_error",
                                   "param": None, "code": exc.code().name.lower()}}
                yield f"data: {json.dumps(error)}\n\n"
        finally:
            call.cancel()  # the client went away: the trainer stops generating

    return StreamingResponse(chunks(), media_type="text/event-stream", headers=SSE_HEADERS)
