"""Generation and deployments for the dashboard (served by the trainer's InferenceService over gRPC).

- ``POST /api/training/generate``: one model answers; Server-Sent Events ``started``, ``delta`` (as text is
  produced), ``finished`` (finish reason, token counts, the whole text); ``error`` if it fails mid-way.
- ``POST /api/training/jobs/{id}/compare``: the job's base model and its adapter answer the same prompt with
  the same seed at once; the same events, each with ``side`` ``base`` or ``adapter``, then ``end``.
- ``POST /api/training/jobs/{id}/deploy`` / ``DELETE .../deploy``: serve a completed job under a model name
  (the OpenAI-compatible ``/v1`` surface lists and answers it); ``GET /api/training/deployments``.

A bad request fails before the stream starts (422 naming the field, 404, 409), never half-way. A browser
that goes away cancels the generation on the trainer.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC
from typing import Annotated

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aragora.training.v1 import inference_pb2 as ipb
from aragora.training.v1 import inference_pb2_grpc
from services.gateway.deps import TimeoutDep
from services.gateway.routers.jobs import JobId
from services.gateway.streams import open_stream, sse_frame

router = APIRouter(prefix="/api/training", tags=["generate"])

FINISH_NAMES = {ipb.FINISH_REASON_STOP: "stop", ipb.FINISH_REASON_LENGTH: "length",
                ipb.FINISH_REASON_CANCELLED: "cancelled"}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
SSE_RESPONSE = {200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}}


def inference_stub(request: Request) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(request.app.state.backends.trainer_channel)


# -- requests --------------------------------------------------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="system, user or assistant")
    content: str = Field(max_length=100_000)


class SamplingBody(BaseModel):
    """Sampling values; unset takes the documented default (docs/inference.md)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = Field(None, description="The chat; or give `prompt`")
    prompt: str | None = Field(None, max_length=100_000, description="One user message (instead of `messages`)")
    system: str | None = Field(None, max_length=20_000, description="A system message put before `prompt`")
    max_new_tokens: int = Field(0, ge=0, le=2**31 - 1, description="Most tokens to generate (0: 256)")
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy; default 1.0")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling; default 1.0")
    seed: int | None = Field(None, ge=0, le=2**62, description="Same seed, same answer; default random")
    stop: list[str] = Field(default_factory=list, description="Up to 4 stop strings")

    @model_validator(mode="after")
    def _one_prompt(self):
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either `messages` or `prompt`")
        return self

    def chat(self) -> list[ipb.ChatMessage]:
        if self.messages is not None:
            return [ipb.ChatMessage(role=m.role, content=m.content) for m in self.messages]
        out = [ipb.ChatMessage(role="system", content=self.system)] if self.system else []
        return [*out, ipb.ChatMessage(role="user", content=self.prompt or "")]

    def sampling(self, seed: int | None = None) -> ipb.SamplingParams:
        s = ipb.SamplingParams(max_new_tokens=min(self.max_new_tokens, 2**31 - 1), stop=self.stop)
        if self.temperature is not None:
            s.temperature = self.temperature
        if self.top_p is not None:
            s.top_p = self.top_p
        seed = self.seed if seed is None else seed
        if seed is not None:
            s.seed = seed
        return s


class GenerateBody(SamplingBody):
    model: str = Field(min_length=1, max_length=300,
                       description="A deployed model name, a job id (its adapter) or a base model id")
    checkpoint_step: int = Field(0, ge=0, le=2**31 - 1, description="With a job id: that checkpoint's adapter")
    base_only: bool = Field(False, description="With a job id: its base model, the adapter disabled")


class CompareBody(SamplingBody):
    checkpoint_step: int = Field(0, ge=0, le=2**31 - 1, description="Compare that checkpoint's adapter")


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=64, description="The model name (default: the job's name)")


class DeploymentPublic(BaseModel):
    name: str
    job_id: str
    base_model: str
    created_at: str


class DeploymentsPublic(BaseModel):
    deployments: list[DeploymentPublic]


# -- helpers shared with the OpenAI-compatible routes ------------------------------------------------------------


def rest_field(field: str) -> str:
    """A trainer field path as the REST body names it (``sampling.top_p`` -> ``top_p``)."""
    return field.removeprefix("sampling.")


def rename_fields(exc: grpc.aio.AioRpcError, rename) -> grpc.aio.AioRpcError:
    """The same error with its BadRequest field paths renamed (the detail text too)."""
    from google.rpc import error_details_pb2, status_pb2

    md = exc.trailing_metadata() or ()
    raw = next((v for k, v in md if k == "grpc-status-details-bin"), None)
    if raw is None:
        return exc
    status = status_pb2.Status.FromString(raw)
    details = exc.details() or ""
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            for v in br.field_violations:
                new = rename(v.field)
                details = details.replace(v.field, new)
                v.field = new
            d.Pack(br)
    status.message = details
    trailing = grpc.aio.Metadata(*[(k, v) for k, v in md if k != "grpc-status-details-bin"],
                                 ("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(exc.code(), exc.initial_metadata(), trailing, details=details)


async def open_generation(stub, request: ipb.GenerateRequest):
    """Starts Generate and reads its ``started`` item, so that a bad request raises before any response."""
    call = stub.Generate(request)
    return call, await open_stream(call, "started", "generation")


async def remaining(call):
    """The items after ``started`` (``open_generation`` used ``read``, so the rest is read the same way)."""
    while True:
        item = await call.read()
        if item is grpc.aio.EOF:
            return
        yield item


def started_data(s: ipb.GenerationStarted) -> dict:
    return {"base_model": s.base_model, "job_id": s.job_id or None, "checkpoint_step": s.checkpoint_step,
            "prompt_tokens": s.prompt_tokens, "seed": s.seed}


def finished_data(f: ipb.GenerationFinished) -> dict:
    return {"finish_reason": FINISH_NAMES.get(f.finish_reason, "stop"), "prompt_tokens": f.prompt_tokens,
            "completion_tokens": f.completion_tokens, "text": f.text}


def _error_data(exc: grpc.aio.AioRpcError) -> dict:
    return {"code": exc.code().name, "detail": (exc.details() or "").splitlines()[0][:500] if exc.details() else ""}


async def _relay(call, extra: dict, out: asyncio.Queue) -> None:
    """Puts a generation's remaining items as SSE frames on ``out``."""
    try:
        async for item in remaining(call):
            kind = item.WhichOneof("item")
            if kind == "delta":
                await out.put(sse_frame("delta", {**extra, "text": item.delta.text,
                                             "completion_tokens": item.delta.completion_tokens}))
            elif kind == "finished":
                await out.put(sse_frame("finished", {**extra, **finished_data(item.finished)}))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            await out.put(sse_frame("error", {**extra, **_error_data(exc)}))


def _stream(calls: list[tuple[object, ipb.GenerationStarted, dict]], end: dict | None) -> StreamingResponse:
    async def frames():
        out: asyncio.Queue = asyncio.Queue()
        for _, started, extra in calls:
            await out.put(sse_frame("started", {**extra, **started_data(started)}))
        tasks = [asyncio.ensure_future(_relay(call, extra, out)) for call, _, extra in calls]
        done = asyncio.ensure_future(asyncio.gather(*tasks))
        try:
            while True:
                getter = asyncio.ensure_future(out.get())
                await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not out.empty():
                    yield out.get_nowait()
                break
            if end is not None:
                yield sse_frame("end", end)
        finally:
            for t in tasks:
                t.cancel()
            for call, _, _ in calls:
                call.cancel()  # the browser went away: the trainer stops generating

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _open(stub, request: ipb.GenerateRequest):
    try:
        return await open_generation(stub, request)
    except grpc.aio.AioRpcError as exc:
        raise rename_fields(exc, rest_field) from None


# -- routes ----------------------------------------------------------------------------------------------------


@router.post("/generate", response_class=StreamingResponse, responses=SSE_RESPONSE)
async def generate(body: GenerateBody, request: Request) -> StreamingResponse:
    """One model answers, streamed: ``started``, ``delta``..., ``finished`` (or ``error``). 404 for an unknown
    model or job, 409 for a job that did not complete, 422 naming the field for bad values."""
    req = ipb.GenerateRequest(model=body.model, checkpoint_step=body.checkpoint_step, base_only=body.base_only,
                              messages=body.chat(), sampling=body.sampling())
    call, started = await _open(inference_stub(request), req)
    return _stream([(call, started, {})], None)


@router.post("/jobs/{job_id}/compare", response_class=StreamingResponse, responses=SSE_RESPONSE)
async def compare(job_id: JobId, body: CompareBody, request: Request) -> StreamingResponse:
    """The job's base model and its adapter answer the same prompt with the same seed, side by side: the
    events of ``/generate`` with ``side`` (``base`` / ``adapter``), then ``end``."""
    seed = body.seed if body.seed is not None else random.randrange(2**31)
    stub = inference_stub(request)
    sides = []
    try:
        for side, base_only in (("adapter", False), ("base", True)):
            req = ipb.GenerateRequest(model=job_id, checkpoint_step=0 if base_only else body.checkpoint_step,
                                      base_only=base_only, messages=body.chat(), sampling=body.sampling(seed))
            call, started = await _open(stub, req)
            sides.append((call, started, {"side": side}))
    except BaseException:
        for call, _, _ in sides:
            call.cancel()
        raise
    return _stream(sides, {"job_id": job_id, "seed": seed})


def _deployment(d: ipb.Deployment) -> DeploymentPublic:
    when = d.created_at.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return DeploymentPublic(name=d.name, job_id=d.job_id, base_model=d.base_model, created_at=when)


@router.post("/jobs/{job_id}/deploy", response_model=DeploymentPublic, status_code=201)
async def deploy(job_id: JobId, request: Request, timeout: TimeoutDep, body: DeployBody | None = None):
    """Serves a completed job's adapter under a model name (default: the job's name): it is listed by
    ``GET /v1/models`` and answers ``/v1/chat/completions``. 409 if the job did not complete or the name is
    taken."""
    resp = await inference_stub(request).DeployJob(
        ipb.DeployJobRequest(job_id=job_id, name=(body or DeployBody()).name), timeout=timeout)
    return _deployment(resp.deployment)


@router.delete("/jobs/{job_id}/deploy", response_model=DeploymentsPublic)
async def undeploy(job_id: JobId, request: Request, timeout: TimeoutDep,
                   name: Annotated[str | None, Query(max_length=64, description="Only this deployment")] = None):
    """Removes the job's deployments (or the one named). 404 when the job has none (of that name)."""
    stub = inference_stub(request)
    listed = await stub.ListDeployments(ipb.ListDeploymentsRequest(job_id=job_id), timeout=timeout)
    targets = [d for d in listed.deployments if name is None or d.name == name]
    if not targets:
        raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   details=f"job {job_id} has no deployment" + (f" named {name!r}" if name else ""))
    removed = [(await stub.UndeployModel(ipb.UndeployModelRequest(name=d.name), timeout=timeout)).deployment
               for d in targets]
    return DeploymentsPublic(deployments=[_deployment(d) for d in removed])


@router.get("/deployments", response_model=DeploymentsPublic)
async def list_deployments(request: Request, timeout: TimeoutDep,
                           job_id: Annotated[str, Query(max_length=200)] = "") -> DeploymentsPublic:
    """The deployments (model name -> job), by name."""
    resp = await inference_stub(request).ListDeployments(ipb.ListDeploymentsRequest(job_id=job_id), timeout=timeout)
    return DeploymentsPublic(deployments=[_deployment(d) for d in resp.deployments])
