"""A download survives a trainer crash: a real ``python -m services.trainer`` is SIGKILLed while its job's worker
is half-way through the weights (the loopback hub is throttled), restarted on the same files; the relaunched
worker continues the ``.part`` file with a Range request instead of starting over, and the job completes."""

from __future__ import annotations

import signal

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from tests.faults.conftest import Follower, start_trainer, write_dataset
from tests.hub.conftest import MODEL
from tests.support.net import free_ports
from tests.support.services import grpc_ready
from tests.support.wait import until
from tests.trainer.conftest import FAST

pytestmark = pytest.mark.slow


def weights_progress(follower: Follower) -> int:
    done = [e.download.bytes_done for e in follower.events
            if e.type == pb.EVENT_TYPE_DOWNLOAD and e.download.file == "model.safetensors"]
    return max(done, default=0)


async def test_a_download_resumes_after_the_trainer_is_killed(fake_hub, hub_repos, tmp_path):
    size = (hub_repos["tiny"] / "model.safetensors").stat().st_size
    fake_hub.rate = size / 12  # about 12 s for the weights: the kill lands mid-file
    write_dataset(tmp_path / "data", "sft/train.jsonl")
    models = tmp_path / "models"
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    settings = dict(hub_enabled="true", hub_endpoint=fake_hub.endpoint)
    trainer = start_trainer(tmp_path, port, models, label="t0", **settings)
    await grpc_ready(trainer, address)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        job = (await stub.CreateJob(pb.CreateJobRequest(name="resumable", vertical="legal", base_model=MODEL,
                                                        training_config=pb.TrainingConfig(**FAST)))).job
        follower = Follower(address, job.id)
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
    await until(lambda: weights_progress(follower) > size // 5, 120, "a fifth of the weights downloaded")
    trainer.signal(signal.SIGKILL)
    trainer.wait(10)
    trainer = start_trainer(tmp_path, port, models, label="t1", **settings)
    await grpc_ready(trainer, address)
    fake_hub.rate = None
    await until(lambda: follower.task.done(), 180, "the job's terminal event")
    async with grpc.aio.insecure_channel(address) as channel:
        final = (await trainer_pb2_grpc.TrainerServiceStub(channel).GetJob(pb.GetJobRequest(job_id=job.id))).job
    trainer.signal(signal.SIGTERM)
    trainer.wait(30)

    assert final.status == pb.JOB_STATUS_COMPLETED, final.error
    ranges = fake_hub.ranges("model.safetensors")
    assert ranges[0] == "" and len(ranges) == 2, ranges
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert size // 5 <= resumed_at < size, (resumed_at, size)
    events = follower.events
    assert any("resuming" in e.message for e in events if e.type == pb.EVENT_TYPE_WARNING)
    done = [e.download for e in events if e.type == pb.EVENT_TYPE_DOWNLOAD and e.download.phase == "done"]
    assert len(done) == 1 and done[0].bytes_done == done[0].bytes_total
    assert (models / "org--tiny-llama" / "model.safetensors").read_bytes() == \
        (hub_repos["tiny"] / "model.safetensors").read_bytes()
