"""Jobs on a real Ray cluster (``TRAINER_EXECUTOR=ray``): placement, events over gRPC, cancel, a lost node.

Every node is a set of processes on this machine (tests/cluster/conftest.py); the trainer is a real gRPC server,
the workers real training processes started by relay actors on the nodes, sending their lines back over gRPC.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import ray

from aragora.training.v1 import trainer_pb2 as pb
from services.trainer.executors.ray import NAMESPACE, actor_name
from services.trainer.jobs import LOST_PREFIX
from tests.cluster.conftest import free_cpus
from tests.support.wait import until
from tests.trainer.conftest import FAST, LONG, create_request, running_trainer, watch_all

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def status(stub, job_id: str) -> pb.Job:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job


async def reaches(stub, job_id: str, *statuses: int, timeout: float = 300) -> pb.Job:
    async def check():
        job = await status(stub, job_id)
        return job if job.status in statuses else None

    return await until(check, timeout, f"job {job_id} to reach {statuses}", interval=0.2)


async def worker_of(running, job_id: str):
    """The job's worker (``RayWorker``) once it started."""
    def started():
        run = running.manager._runs.get(job_id)
        return run.worker if run is not None and run.worker is not None and run.spawned.is_set() else None

    return await until(started, 120, f"the worker of {job_id} to start")


def worker_started(events) -> list[str]:
    return [e.message for e in events if e.message.startswith("worker started")]


def assert_exactly_once(events, steps: int) -> None:
    """Sequence numbers 1..N without gaps or repeats, and each training step once (no resume happened)."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    step_numbers = [e.step.step for e in events if e.type == pb.EVENT_TYPE_STEP]
    assert step_numbers == list(range(1, steps + 1)), step_numbers


async def test_a_job_runs_on_the_second_node_and_completes(cluster, tiny_models_dir, tmp_path):
    async with running_trainer(tmp_path, models_dir=tiny_models_dir, executor="ray",
                               ray_resources={"node_b": 0.01}) as (stub, running):
        job = (await stub.CreateJob(create_request("on-b", **FAST))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        await reaches(stub, job.id, pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_TRAINING, pb.JOB_STATUS_COMPLETED)
        # While it runs: the worker's channel to the trainer is cut, twice; the relay reconnects and resends.
        relay = ray.get_actor(actor_name(job.id), namespace=NAMESPACE)
        for _ in range(2):
            try:
                await relay.drop_connection.remote()
            except ray.exceptions.RayActorError:
                break  # the job already finished
            await asyncio.sleep(1.0)
        done = await reaches(stub, job.id, pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED)
        _, events = await watch_all(stub, job.id)
        assert done.status == pb.JOB_STATUS_COMPLETED, [e.message for e in events][-5:]
        started = worker_started(events)
        assert len(started) == 1 and cluster.node_b.node_id[:12] in started[0], started
        assert_exactly_once(events, 6)
        # The artifacts are on the shared filesystem path and download through the API as with a local worker.
        listing = await stub.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job.id))
        names = {a.name for a in listing.files}
        assert {"adapter/adapter_model.safetensors", "events.jsonl", "metrics.json"} <= names, names
        weights = b"".join([r.data async for r in stub.ReadArtifact(pb.ReadArtifactRequest(
            job_id=job.id, name="adapter/adapter_model.safetensors"))])
        assert weights == (Path(running.manager.job_dir(job.id)) / "adapter/adapter_model.safetensors").read_bytes()
        lines = (Path(running.manager.job_dir(job.id)) / "events.jsonl").read_text().splitlines()
        assert [json.loads(ln)["sequence"] for ln in lines] == [e.sequence for e in events]
        await until(lambda: free_cpus() == 2.0, 10, "the job's CPU to be free again")


async def test_two_jobs_run_at_once_on_two_nodes_a_third_waits_and_cancel_frees_the_room(cluster, tiny_models_dir,
                                                                                         tmp_path):
    async with running_trainer(tmp_path, models_dir=tiny_models_dir, executor="ray",
                               max_concurrent_jobs=4) as (stub, running):
        jobs = [(await stub.CreateJob(create_request(f"long-{i}", **LONG))).job for i in range(3)]
        for job in jobs:
            await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        first, second, third = jobs
        for job in (first, second):
            await reaches(stub, job.id, pb.JOB_STATUS_TRAINING)
        # Each node has one CPU and each job asks for one: the two run at once, one per node, and the third
        # waits in queued (in order) for room on the cluster.
        nodes = {(await worker_of(running, j.id)).node_id for j in (first, second)}
        assert nodes == {cluster.head_node.node_id, cluster.node_b.node_id}
        assert (await status(stub, third.id)).status == pb.JOB_STATUS_QUEUED
        _, events = await watch_all(stub, third.id, until=lambda e: "waiting for room" in e.message)
        assert "waiting for room on the Ray cluster (it asks for 1 CPU" in events[-1].message
        assert free_cpus() == 0.0

        # Cancel frees the job's CPU within 5 s (the worker checkpoints on SIGTERM), and the third job starts
        # in the room it leaves.
        node_of_first = (await worker_of(running, first.id)).node_id
        cancelled = (await asyncio.wait_for(stub.CancelJob(pb.CancelJobRequest(job_id=first.id)), 5.0)).job
        assert cancelled.status == pb.JOB_STATUS_CANCELLED
        await reaches(stub, third.id, pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_TRAINING, timeout=60)
        assert (await worker_of(running, third.id)).node_id == node_of_first
        with pytest.raises(ValueError):
            ray.get_actor(actor_name(first.id), namespace=NAMESPACE)

        for job in (second, third):
            await asyncio.wait_for(stub.CancelJob(pb.CancelJobRequest(job_id=job.id)), 5.0)
        await until(lambda: free_cpus() == 2.0, 5, "every CPU to be free after the cancels")
        assert ray.util.placement_group_table() and all(
            g["state"] == "REMOVED" for g in ray.util.placement_group_table().values())


async def test_the_node_running_a_job_dies_and_the_job_resumes_from_its_checkpoint_on_another(cluster,
                                                                                              tiny_models_dir,
                                                                                              tmp_path):
    from ray.util.placement_group import placement_group, remove_placement_group

    from tests.trainer.conftest import pid_alive

    node_c = cluster.add_node(num_cpus=1, resources={"node_c": 1})
    cluster.wait_for_nodes()
    # Room only on node C at first: the job goes there.
    blockers = {name: placement_group([{"CPU": 1, name: 0.01}]) for name in ("head_node", "node_b")}
    for group in blockers.values():
        await group.ready()
    try:
        async with running_trainer(tmp_path, models_dir=tiny_models_dir, executor="ray") as (stub, running):
            config = dict(FAST, num_epochs=4, max_steps=24, checkpoint_every_steps=2)
            job = (await stub.CreateJob(create_request("loses-its-node", **config))).job
            await stub.StartJob(pb.StartJobRequest(job_id=job.id))
            worker = await worker_of(running, job.id)
            assert worker.node_id == node_c.node_id
            remove_placement_group(blockers.pop("node_b"))  # node B has room again; the head stays full
            await watch_all(stub, job.id, until=lambda e: e.type == pb.EVENT_TYPE_CHECKPOINT)
            pid = worker.pid
            cluster.remove_node(node_c, allow_graceful=False)

            done = await reaches(stub, job.id, pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED)
            _, events = await watch_all(stub, job.id)
            messages = [e.message for e in events]
            assert done.status == pb.JOB_STATUS_COMPLETED, messages[-5:]
            lost = [m for m in messages if m.startswith(LOST_PREFIX)]
            assert len(lost) == 1 and "resuming from checkpoint-" in lost[0], lost
            started = worker_started(events)
            assert len(started) == 2 and cluster.node_b.node_id[:12] in started[1], started
            assert not pid_alive(pid), "the worker on the dead node outlived it"
            # The resumed worker continued from the checkpoint: it did not train step 1 again.
            steps = [e.step.step for e in events if e.type == pb.EVENT_TYPE_STEP]
            assert steps.count(1) == 1 and steps[-1] == 24, steps
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    finally:
        for group in blockers.values():
            remove_placement_group(group)


async def test_with_an_api_token_the_relay_authenticates_and_a_stranger_cannot_write_to_a_job(cluster,
                                                                                           tiny_models_dir,
                                                                                           tmp_path):
    import grpc

    from aragora.training.v1 import trainer_pb2_grpc, worker_events_pb2, worker_events_pb2_grpc

    token = (("authorization", "Bearer cluster-secret"),)
    async with running_trainer(tmp_path, models_dir=tiny_models_dir, executor="ray",
                               api_token="cluster-secret") as (_, running):
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            job = (await stub.CreateJob(create_request("with-token", **FAST), metadata=token)).job
            await stub.StartJob(pb.StartJobRequest(job_id=job.id), metadata=token)

            report = worker_events_pb2_grpc.WorkerEventsServiceStub(channel).ReportLines
            forged = worker_events_pb2.ReportLinesRequest(job_id=job.id, attempt="guessed", lines=[
                worker_events_pb2.WorkerLine(sequence=1, line='{"type": "log", "message": "forged"}')])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await report(forged)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer = await report(forged, metadata=token)
            assert answer.stop and answer.acked_sequence == 0

            async def ended():
                found = (await stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=token)).job
                return found if found.status in (pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED) else None

            done = await until(ended, 300, "the job to end", interval=0.2)
            events = [item.event async for item in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=token)
                      if item.WhichOneof("item") == "event"]
            assert done.status == pb.JOB_STATUS_COMPLETED, [e.message for e in events][-5:]
            assert not any("forged" in e.message for e in events)
