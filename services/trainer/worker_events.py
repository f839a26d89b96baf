"""``WorkerEventsService``: where the workers of a Ray cluster (``executor = "ray"``) send their lines.

Protobuf stops here: the servicer hands the job id, the launch id and the lines to the executor, which queues
them for the job's supervisor and answers with the last sequence stored (``services/trainer/executors/ray.py``).
"""

from __future__ import annotations

from aragora.training.v1 import worker_events_pb2 as pb
from aragora.training.v1 import worker_events_pb2_grpc
from services.common.errors import FailedPrecondition, InvalidArgument
from services.trainer.jobs import JobManager

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WorkerEventsService"].full_name
add_to_server = worker_events_pb2_grpc.add_WorkerEventsServiceServicer_to_server


class WorkerEventsServicer(worker_events_pb2_grpc.WorkerEventsServiceServicer):
    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def ReportLines(self, request: pb.ReportLinesRequest, context) -> pb.ReportLinesResponse:
        receive = getattr(self.manager.executor, "receive", None)
        if receive is None:
            raise FailedPrecondition("this trainer runs its workers itself (TRAINER_EXECUTOR is "
                                     f"{self.manager.executor.name!r}): it takes no remote worker lines")
        if not request.job_id:
            raise InvalidArgument("is required", field="job_id")
        if not request.attempt:
            raise InvalidArgument("is required", field="attempt")
        acked, stop = await receive(request.job_id, request.attempt, request.lines)
        return pb.ReportLinesResponse(acked_sequence=acked, stop=stop)
