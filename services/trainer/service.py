"""The trainer's gRPC servicer: converts messages and delegates to the job manager (whose calls that touch
the database or the disk run off the event loop, so one slow call never stalls the others or a WatchJob).

Domain errors raised by the manager (``InvalidArgument``, ``NotFound``, ``FailedPrecondition``,
``AlreadyExists``) become gRPC status codes in the shared error interceptor.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.auth import policy
from services.common.errors import InvalidArgument
from services.trainer import convert
from services.trainer.jobs import JobManager
from services.trainer.orm import Job

CHUNK_BYTES = 256 * 1024


def _owner() -> str | None:
    """The owner of a job the caller creates: its key's name; None with no keys or a service token."""
    principal = policy.current()
    return principal.name if principal.key_id else None


def _relative(path: str, root) -> str:
    """``path`` relative to ``root`` (a job's folder as ``job-.../adapter``), or its last part if outside."""
    if not path:
        return path
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """TrainerService over the job manager."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def CreateJob(self, request: pb.CreateJobRequest, context) -> pb.CreateJobResponse:
        raw = convert.config_from_pb(request.training_config)
        job = await self.manager.create(request.name, request.vertical, request.base_model, raw, _owner())
        return pb.CreateJobResponse(job=convert.job_to_pb(job))

    async def CloneJob(self, request: pb.CloneJobRequest, context) -> pb.CloneJobResponse:
        overrides = convert.config_from_pb(request.overrides)
        await self.manager.visible(request.job_id)
        job = await self.manager.clone(request.job_id, request.name, overrides, _owner())
        return pb.CloneJobResponse(job=convert.job_to_pb(job))

    async def PreflightJob(self, request: pb.PreflightJobRequest, context) -> pb.PreflightJobResponse:
        raw = convert.config_from_pb(request.training_config)
        config, result = await self.manager.preflight(request.name, request.vertical, request.base_model, raw)
        return convert.preflight_to_pb(config, result)

    async def StartJob(self, request: pb.StartJobRequest, context) -> pb.StartJobResponse:
        await self.manager.visible(request.job_id)
        return pb.StartJobResponse(job=convert.job_to_pb(await self.manager.start(request.job_id)))

    async def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        await self.manager.visible(request.job_id)
        # Shielded: a client giving up on the call must not leave a worker half-terminated.
        job = await asyncio.shield(self.manager.cancel(request.job_id))
        return pb.CancelJobResponse(job=convert.job_to_pb(job))

    async def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=convert.job_to_pb(await self.manager.visible(request.job_id)))

    async def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        if request.limit < 0:
            raise InvalidArgument("must be >= 0", field="limit")
        if request.offset < 0:
            raise InvalidArgument("must be >= 0", field="offset")
        status = convert.status_from_pb(request.status)
        jobs, total = await self.manager.list(request.vertical, status, request.limit, offset=request.offset,
                                              owner=policy.current().owner_filter)
        return pb.ListJobsResponse(jobs=[convert.job_to_pb(j) for j in jobs], total=total)

    async def GetJobCounts(self, request, context) -> pb.GetJobCountsResponse:
        return pb.GetJobCountsResponse(**(await self.manager.counts(policy.current().owner_filter)))

    async def GetJobMetrics(self, request: pb.GetJobMetricsRequest, context) -> pb.GetJobMetricsResponse:
        await self.manager.visible(request.job_id)
        return convert.metrics_to_pb(await self.manager.metrics(request.job_id))

    async def GetJobArtifacts(self, request: pb.GetJobArtifactsRequest, context) -> pb.GetJobArtifactsResponse:
        await self.manager.visible(request.job_id)
        out = convert.artifacts_to_pb(await self.manager.artifacts(request.job_id))
        if not policy.current().is_admin:  # absolute server paths are for admins: others get them per job folder
            out.checkpoint_path = _relative(out.checkpoint_path, self.manager.jobs_dir)
            out.data_directory = _relative(out.data_directory, self.manager.jobs_dir)
        return out

    async def ReadArtifact(self, request: pb.ReadArtifactRequest, context):
        if request.offset < 0:
            raise InvalidArgument("must be >= 0", field="offset")
        if request.length < 0:
            raise InvalidArgument("must be >= 0 (0: to the end)", field="length")
        await self.manager.visible(request.job_id)
        path = await self.manager.artifact_path(request.job_id, request.name)
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            size, mtime = st.st_size, st.st_mtime_ns
            left = size - min(request.offset, size)
            if request.length:
                left = min(left, request.length)
            fh.seek(min(request.offset, size))
            sent = False
            while True:
                chunk = await asyncio.to_thread(fh.read, min(CHUNK_BYTES, left)) if left > 0 else b""
                left -= len(chunk)
                if not chunk and sent:
                    return
                yield pb.ReadArtifactResponse(data=chunk, size_bytes=size, modified_unix_ns=mtime)
                sent = True
                if not chunk:
                    return

    async def ListBaseModels(self, request, context) -> pb.ListBaseModelsResponse:
        return pb.ListBaseModelsResponse(models=[convert.model_to_pb(m) for m in await self.manager.list_models()])

    async def WatchJob(self, request: pb.WatchJobRequest, context):
        if request.after_sequence < 0:
            raise InvalidArgument("must be >= 0", field="after_sequence")
        await self.manager.visible(request.job_id)
        async for item in self.manager.watch(request.job_id, request.after_sequence):
            if isinstance(item, Job):
                yield pb.WatchJobResponse(snapshot=convert.job_to_pb(item))
            else:
                yield pb.WatchJobResponse(event=convert.event_to_pb(item))

    async def PullBaseModel(self, request: pb.PullBaseModelRequest, context) -> pb.PullBaseModelResponse:
        started = await self.manager.model_admin.pull(request.model_id)
        return pb.PullBaseModelResponse(model_id=started.model_id, already_present=started.already_present,
                                        files_total=started.files_total, bytes_total=started.bytes_total,
                                        revision=started.revision)

    async def ListLocalModels(self, request, context) -> pb.ListLocalModelsResponse:
        return pb.ListLocalModelsResponse(models=[
            pb.LocalModel(id=m.id, size_bytes=m.size_bytes, files=m.files, source=m.source, revision=m.revision,
                          bytes_total=m.bytes_total, used_by=m.used_by, pulling=m.pulling, pull_error=m.pull_error)
            for m in await self.manager.model_admin.list()
        ])

    async def DeleteLocalModel(self, request: pb.DeleteLocalModelRequest, context) -> pb.DeleteLocalModelResponse:
        return pb.DeleteLocalModelResponse(freed_bytes=await self.manager.model_admin.delete(request.model_id))
