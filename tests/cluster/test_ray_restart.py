"""A trainer restart with jobs on a Ray cluster: the workers keep running on their nodes, their lines wait in
the relay while the trainer is down, and the new trainer process follows them again (no relaunch, every line
stored once). The trainer runs as its own OS process (``python -m services.trainer``), killed and restarted."""

from __future__ import annotations

import signal

import grpc
import pytest
import ray

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.trainer.executors.ray import NAMESPACE, actor_name
from tests.cluster.conftest import free_cpus
from tests.cluster.test_ray_jobs import reaches, worker_started
from tests.support.net import free_port
from tests.support.services import ServiceProcess, base_env, grpc_ready, trainer_env
from tests.support.wait import until
from tests.trainer.conftest import FAST, create_request, watch_all, write_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


STEPS = 600


async def test_a_trainer_restart_reattaches_to_the_job_still_running_on_the_cluster(cluster, tiny_models_dir,
                                                                                    tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    write_dataset(tmp_path / "data")
    env = base_env(**trainer_env(tmp_path, port, tiny_models_dir, executor="ray", ray_address=cluster.address,
                                 ray_resources='{"node_b": 0.01}'))
    trainer = ServiceProcess("trainer", env, tmp_path / "trainer.log")
    await grpc_ready(trainer, address)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        # Long enough that both stops land mid-training on a quiet machine (13 steps/s there; 120 steps were done
        # before the second stop).
        config = dict(FAST, num_epochs=100, max_steps=STEPS, checkpoint_every_steps=8)
        job = (await stub.CreateJob(create_request("outlives-its-trainer", **config))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        await reaches(stub, job.id, pb.JOB_STATUS_TRAINING)
        pid = (await ray.get_actor(actor_name(job.id), namespace=NAMESPACE).info.remote())["pid"]

        # A crash (SIGKILL) mid-training, then a clean stop (SIGTERM): each time the worker keeps training on
        # node B while no trainer listens, and the trainer that starts next follows it.
        # (The second stop comes as soon as the restarted trainer serves: the worker trained on meanwhile.)
        for sig, at_step in ((signal.SIGKILL, 2), (signal.SIGTERM, 0)):
            await until(lambda step=at_step: _step_reached(stub, job.id, step), 120, f"step {at_step}")
            now = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
            assert now.status == pb.JOB_STATUS_TRAINING, f"the job ended too soon for this test: {now.status}"
            trainer.signal(sig)
            trainer.wait(30)
            # Nothing of the job was stopped: its relay still runs the same worker, its CPU is still taken.
            relay = ray.get_actor(actor_name(job.id), namespace=NAMESPACE)
            assert (await relay.info.remote())["pid"] == pid
            await until(lambda: free_cpus() == 1.0, 5, f"the job's CPU to be held while no trainer runs ({sig!r})")
            trainer.start()
            await grpc_ready(trainer, address)

        done = await reaches(stub, job.id, pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED, timeout=900)
        _, events = await watch_all(stub, job.id)
        messages = [e.message for e in events]
        assert done.status == pb.JOB_STATUS_COMPLETED, messages[-5:]
        assert len(worker_started(events)) == 1, "the worker was relaunched instead of followed"
        assert sum("following it again" in m for m in messages) == 2, messages
        # Nothing lost or repeated across the cuts: sequences 1..N, every training step exactly once.
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert [e.step.step for e in events if e.type == pb.EVENT_TYPE_STEP] == list(range(1, STEPS + 1))
    trainer.stop()
    await until(lambda: free_cpus() == 2.0, 10, "the job's CPU to be free again")


async def _step_reached(stub, job_id: str, step: int) -> bool:
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    return job.current_step >= step or job.status == pb.JOB_STATUS_COMPLETED
