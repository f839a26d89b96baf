"""The trainer's gRPC servicer: converts messages and delegates to the job manager."""

from __future__ import annotations

import grpc

from aragora.training.v1 import trainer_pb2, trainer_pb2_grpc


async def _unimplemented(context: grpc.aio.ServicerContext, rpc: str) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"TrainerService.{rpc} is not implemented yet")


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """TrainerService over the job manager."""

    async def ListJobs(self, request, context):
        # No job store exists yet, so there is nothing to list.
        return trainer_pb2.ListJobsResponse(jobs=[], total=0)

    async def CreateJob(self, request, context):
        await _unimplemented(context, "CreateJob")

    async def StartJob(self, request, context):
        await _unimplemented(context, "StartJob")

    async def CancelJob(self, request, context):
        await _unimplemented(context, "CancelJob")

    async def GetJob(self, request, context):
        await _unimplemented(context, "GetJob")

    async def GetJobCounts(self, request, context):
        await _unimplemented(context, "GetJobCounts")

    async def GetJobMetrics(self, request, context):
        await _unimplemented(context, "GetJobMetrics")

    async def GetJobArtifacts(self, request, context):
        await _unimplemented(context, "GetJobArtifacts")

    async def ReadArtifact(self, request, context):
        await _unimplemented(context, "ReadArtifact")
        yield  # pragma: no cover - makes this an async generator

    async def ListBaseModels(self, request, context):
        await _unimplemented(context, "ListBaseModels")

    async def WatchJob(self, request, context):
        await _unimplemented(context, "WatchJob")
        yield  # pragma: no cover
