"""A job whose trainer keeps crashing, for real: a real ``python -m services.trainer`` is SIGKILLed four times
while the job's worker runs, each time restarted on the same files, at the documented default
``TRAINER_MAX_RESUMES`` (3, not set here). Restarts 1 to 3 resume the job (each stopping the orphaned worker
the killed trainer left); the fourth crash fails it with the reason, and no worker runs it again."""

from __future__ import annotations

import re
import signal

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.trainer.config import TrainerSettings
from tests.faults.conftest import (
    Follower,
    start_trainer,
    write_dataset,
)
from tests.support.net import free_ports
from tests.support.services import grpc_ready
from tests.support.wait import until
from tests.trainer.conftest import TINY, pid_alive

pytestmark = pytest.mark.slow

# Long enough never to finish while the test runs; each worker is killed soon after it starts.
CONFIG = dict(num_epochs=1, max_steps=1000, batch_size=2, max_seq_length=64, quantization=pb.QUANTIZATION_NONE,
              lora_r=4, lora_alpha=8, gradient_checkpointing=False, dataset_path="sft/train.jsonl",
              checkpoint_every_steps=5)
STARTED = re.compile(r"^worker started \(pid (\d+)\)$")


def worker_starts(follower: Follower) -> list[int]:
    return [int(m.group(1)) for e in follower.events if (m := STARTED.match(e.message))]


async def test_a_job_whose_trainer_keeps_crashing_fails_after_max_resumes_restarts(tmp_path, tiny_models_dir):
    limit = TrainerSettings.model_fields["max_resumes"].default
    assert limit == 3  # the documented default (docs/faults.md, README), which this test runs at
    write_dataset(tmp_path / "data", "sft/train.jsonl", n=40)
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    trainer = start_trainer(tmp_path, port, tiny_models_dir, label="t0")
    await grpc_ready(trainer, address)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = pb.CreateJobRequest(name="crashy", vertical="legal", base_model=TINY,
                                      training_config=pb.TrainingConfig(**CONFIG))
        job = (await stub.CreateJob(request)).job
        follower = Follower(address, job.id)
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
    orphans: list[int] = []
    for crash in range(1, limit + 2):
        # The worker of this trainer runs (its pid is stored before this event): crash the trainer.
        pids = await until(lambda n=crash: worker_starts(follower)[n - 1:], 120, f"worker {crash}")
        trainer.signal(signal.SIGKILL)
        trainer.wait(10)
        orphans.append(pids[0])
        assert pid_alive(pids[0]), "a SIGKILLed trainer leaves its worker running"
        trainer = start_trainer(tmp_path, port, tiny_models_dir, label=f"t{crash}")
        await grpc_ready(trainer, address)  # recover() ran before the server answered
        assert not pid_alive(orphans[-1]), f"restart {crash} stopped the orphaned worker"
    await until(lambda: follower.task.done(), 60, "the job's terminal event")
    async with grpc.aio.insecure_channel(address) as channel:
        final = (await trainer_pb2_grpc.TrainerServiceStub(channel).GetJob(pb.GetJobRequest(job_id=job.id))).job
    trainer.signal(signal.SIGTERM)
    trainer.wait(30)

    reason = (f"trainer restarted while the job was running, {limit + 1} times: not resuming it again "
              f"(TRAINER_MAX_RESUMES is {limit})")
    assert final.status == pb.JOB_STATUS_FAILED and final.error == reason
    events = follower.events
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    resumes = [e.message for e in events if e.type == pb.EVENT_TYPE_WARNING and "; resuming " in e.message]
    assert len(resumes) == limit
    for n, message in enumerate(resumes, 1):
        assert message.startswith("the trainer stopped unexpectedly while the job was ") and \
            f"(restart {n} of at most {limit}); resuming from " in message
    assert events[-1].status_change.to_status == pb.JOB_STATUS_FAILED and events[-1].status_change.reason == reason
    # One worker per trainer that ran the job, none after the last crash.
    assert len(worker_starts(follower)) == limit + 1
    assert not any(pid_alive(p) for p in orphans)
