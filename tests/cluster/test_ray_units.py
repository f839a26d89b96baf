"""The Ray executor's pieces that need no cluster: the resource request of a job, and the trainer's side of the
worker stream (each sequence handled once, in order, whatever the relay resends)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ray")

from aragora.training.v1 import worker_events_pb2 as pb  # noqa: E402
from services.trainer.executors import LOST  # noqa: E402
from services.trainer.executors.ray import GIB, RayWorker, describe, job_resources  # noqa: E402
from tests.conftest import trainer_settings  # noqa: E402


def test_a_job_asks_for_cpus_gpus_and_memory_from_its_config_and_model(tmp_path):
    settings = trainer_settings(tmp_path, ray_cpus_per_worker=0.5, ray_resources={"node_b": 0.01})
    # 135M weights, not quantized, on a CPU cluster: fp32 weights + 1 GiB, in 64 MiB steps.
    cpu = job_resources({"quantization": "none"}, settings, 135_000_000, cluster_has_gpus=False)
    assert cpu == {"CPU": 0.5, "memory": float(1600 * 1024**2), "node_b": 0.01}
    # 7B in 4 bits on a GPU cluster: one GPU, half a byte per weight; two workers ask for twice of everything.
    gpu = job_resources({"quantization": "4bit", "num_workers": 2}, settings, 7_000_000_000, cluster_has_gpus=True)
    assert gpu["GPU"] == 2.0 and gpu["CPU"] == 1.0
    assert gpu["memory"] == 2 * (((int(7e9 * 0.5) + GIB) + 64 * 1024**2 - 1) // (64 * 1024**2)) * 64 * 1024**2
    assert describe(cpu) == "0.5 CPU, 1.6 GiB memory, 0.01 node_b"


def record(seq: int, line: str = "", exit_code: int | None = None) -> pb.WorkerLine:
    if exit_code is None:
        return pb.WorkerLine(sequence=seq, line=line or f'{{"type": "log", "message": "line {seq}"}}')
    return pb.WorkerLine(sequence=seq, exit_code=exit_code)


async def test_resent_lines_are_skipped_a_gap_is_not_crossed_and_the_ack_follows_what_is_stored():
    worker = RayWorker("job-1", "attempt-1", actor=None, group=None, info={})
    handled: list[int] = []

    async def supervisor():
        async for seq, _raw in worker.lines():
            handled.append(seq)
            await worker.handled(seq)

    task = asyncio.get_running_loop().create_task(supervisor())
    assert await worker.receive([record(1), record(2), record(3)]) == 3
    # The answer was lost: the relay sends 2-5 again; 2 and 3 are not handled twice.
    assert await worker.receive([record(2), record(3), record(4), record(5)]) == 5
    # A batch that starts after a gap: nothing of it is taken, the ack says where to resend from.
    assert await worker.receive([record(7), record(8)]) == 5
    assert await worker.receive([record(6), record(7), record(8, exit_code=0)]) == 7
    await asyncio.wait_for(task, 5)
    assert handled == [1, 2, 3, 4, 5, 6, 7]
    assert await worker.wait() == 0


class DeadRelay:
    """A relay actor handle whose actor died (as Ray reports it: the pending call raises ``RayActorError``)."""

    class wait_done:  # noqa: N801 (the actor method's name)
        @staticmethod
        async def remote(timeout: float):
            import ray

            await asyncio.sleep(0.1)
            raise ray.exceptions.RayActorError()


async def test_a_worker_whose_relay_died_before_its_exit_is_lost():
    worker = RayWorker("job-1", "attempt-1", actor=DeadRelay(), group=None, info={}, handled=4)
    assert await worker.receive([record(3), record(4)]) == 4  # stored by a previous trainer: skipped
    assert [item async for item in worker.lines()] == []
    assert await worker.wait() is LOST
