"""The InferenceService servicer: converts messages, plans, and runs generations in worker threads.

A generation runs in one thread of a pool of ``TRAINER_INFERENCE_MAX_STREAMS`` (more wait their turn); its
pieces of text come back to the event loop through a queue. When the client cancels or goes away, the
servicer's coroutine is cancelled and sets the generation's cancel flag, which the loop checks before
every step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from aragora.training.v1 import inference_pb2 as pb
from aragora.training.v1 import inference_pb2_grpc
from services.auth import policy
from services.common.db import Database
from services.common.errors import AlreadyExists, FailedPrecondition, NotFound
from services.trainer import models
from services.trainer.config import TrainerSettings
from services.trainer.inference import planner
from services.trainer.inference.store import Deployment, DeploymentStore, check_name
from services.trainer.orm import JobStatus

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name
add_to_server = inference_pb2_grpc.add_InferenceServiceServicer_to_server
FINISH = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH, "cancelled": pb.FINISH_REASON_CANCELLED}


def _deployment_pb(d: Deployment) -> pb.Deployment:
    ts = Timestamp()
    ts.FromDatetime(d.created_at)
    return pb.Deployment(name=d.name, job_id=d.job_id, base_model=d.base_model, created_at=ts)


class Inference:
    """Plans requests against the jobs, deployments and models, and owns the engine (made on first use)."""

    def __init__(self, settings: TrainerSettings, db: Database, get_job: Callable) -> None:
        """``get_job(job_id)``: the job row (``NotFound`` for an unknown id), called from worker threads."""
        self.settings = settings
        self.get_job = get_job
        self.jobs_dir = Path(settings.jobs_dir).absolute()
        self.models_dir = Path(settings.models_dir).absolute()
        self.deployments = DeploymentStore(db)
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.inference_max_streams),
                                       thread_name_prefix="inference")
        self._engine = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self):
        with self._engine_lock:
            if self._engine is None:
                from services.trainer.inference.engine import Engine

                self._engine = Engine(self.settings.inference_memory_bytes, self.settings.inference_threads)
            return self._engine

    def target(self, model: str, checkpoint_step: int = 0, base_only: bool = False) -> planner.Target:
        model = model.strip()
        if not model:
            raise planner.InvalidArgument("must name a deployment, a job id or a base model", field="model")
        deployment = self.deployments.get(model)
        job = None
        if deployment is not None:
            try:
                job = self.visible_job(deployment.job_id)
            except NotFound:
                pass  # another user's: as if it did not exist
        if job is None and model.startswith("job-"):
            job = self.visible_job(model)  # NotFound for an unknown job (or another user's)
        if job is not None:
            return planner.job_target(job, self.jobs_dir / job.id, self.models_dir, checkpoint_step, base_only)
        if checkpoint_step:
            raise planner.InvalidArgument("only a job has checkpoints", field="checkpoint_step")
        return planner.base_target(self.models_dir, model)

    def plan(self, request: pb.GenerateRequest) -> planner.Plan:
        s = request.sampling
        sampling = planner.check_sampling(
            s.max_new_tokens, s.temperature if s.HasField("temperature") else None,
            s.top_p if s.HasField("top_p") else None, s.seed if s.HasField("seed") else None, list(s.stop),
            self.settings.inference_max_new_tokens)
        messages = planner.check_messages([{"role": m.role, "content": m.content} for m in request.messages])
        target = self.target(request.model, request.checkpoint_step, request.base_only)
        return planner.Plan(target, messages, sampling)

    def visible_job(self, job_id: str):
        """The job row if the caller may see it; ``NotFound`` (an unknown id's message) otherwise."""
        job = self.get_job(job_id)
        policy.check_visible(job.owner, f"job {job_id!r} not found")
        return job

    def visible_deployment(self, deployment: Deployment) -> bool:
        try:
            self.visible_job(deployment.job_id)
        except NotFound:
            return False
        return True

    def undeploy(self, name: str) -> Deployment:
        deployment = self.deployments.get(name)
        if deployment is not None and not self.visible_deployment(deployment):
            raise NotFound(f"no deployment named {name!r}")
        return self.deployments.remove(name)

    def list_deployments(self, job_id: str = "") -> list[Deployment]:
        """The deployments the caller may see (of ``job_id`` only: ``NotFound`` for an unknown job)."""
        if job_id:
            self.visible_job(job_id)
            return self.deployments.list(job_id)
        return [d for d in self.deployments.list() if self.visible_deployment(d)]

    def deploy(self, job_id: str, name: str) -> Deployment:
        job = self.visible_job(job_id)
        name = check_name(name.strip() or job.name)
        if job.status != JobStatus.COMPLETED.value:
            raise FailedPrecondition(f"job {job_id} is {job.status}: only a completed job can be deployed")
        if not (self.jobs_dir / job.id / "adapter" / "adapter_config.json").is_file():
            raise NotFound(f"job {job_id} has no adapter in its artifacts")
        for info in models.list_models(self.models_dir):
            if name == info.id or name in info.aliases:
                raise AlreadyExists(f"{name!r} is a base model's name: pick another deployment name")
        return self.deployments.add(name, job.id, job.base_model)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: Inference) -> None:
        self.inference = inference

    async def Generate(self, request: pb.GenerateRequest, context):
        # Planning reads the job store and the models folder: off the event loop, like every store read.
        plan = await asyncio.to_thread(self.inference.plan, request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def put(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def on_start(target: planner.Target, prompt_tokens: int) -> None:
            put(pb.GenerateResponse(started=pb.GenerationStarted(
                base_model=target.base_model, job_id=target.job_id, checkpoint_step=target.checkpoint_step,
                prompt_tokens=prompt_tokens, seed=plan.sampling.seed)))

        def emit(text: str, completion_tokens: int) -> None:
            put(pb.GenerateResponse(delta=pb.GenerationDelta(text=text, completion_tokens=completion_tokens)))

        def work() -> None:
            try:
                outcome = self.inference.engine.run(plan, cancel, on_start, emit)
                put(pb.GenerateResponse(finished=pb.GenerationFinished(
                    finish_reason=FINISH[outcome.finish_reason], prompt_tokens=outcome.prompt_tokens,
                    completion_tokens=outcome.completion_tokens, text=outcome.text)))
            except BaseException as exc:  # noqa: BLE001 - carried to the event loop and raised there
                put(exc)
            finally:
                put(None)

        future = loop.run_in_executor(self.inference.pool, work)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()  # the client went away (or the stream ended): stop at the next step
            if not future.done():
                future.add_done_callback(lambda f: f.exception())

    async def DeployJob(self, request: pb.DeployJobRequest, context) -> pb.DeployJobResponse:
        deployment = await asyncio.to_thread(self.inference.deploy, request.job_id, request.name)
        return pb.DeployJobResponse(deployment=_deployment_pb(deployment))

    async def UndeployModel(self, request: pb.UndeployModelRequest, context) -> pb.UndeployModelResponse:
        deployment = await asyncio.to_thread(self.inference.undeploy, request.name)
        return pb.UndeployModelResponse(deployment=_deployment_pb(deployment))

    async def ListDeployments(self, request: pb.ListDeploymentsRequest, context) -> pb.ListDeploymentsResponse:
        deployments = await asyncio.to_thread(self.inference.list_deployments, request.job_id)
        return pb.ListDeploymentsResponse(deployments=[_deployment_pb(d) for d in deployments])
