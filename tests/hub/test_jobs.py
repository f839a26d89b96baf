"""Jobs on hub models through the real trainer (gRPC, worker processes): the download in preparing with its
progress on WatchJob, create-time checks by kind, the admin's pull / list / delete, and hub access off."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from services.trainer import hub
from tests.hub.conftest import ENCODER, GATED, MODEL, TOKEN
from tests.trainer.conftest import FAST, running_trainer, watch_all


def hub_settings(fake_hub, **kw) -> dict:
    return dict(hub_enabled=True, hub_endpoint=fake_hub.endpoint, **kw)


def request(name: str, base_model: str = MODEL, **config) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(name=name, vertical="legal", base_model=base_model,
                               training_config=pb.TrainingConfig(**(config or FAST)))


async def test_a_job_downloads_its_hub_model_while_preparing_then_trains(fake_hub, tmp_path):
    fake_hub.rate = 300_000
    models = tmp_path / "models"
    async with running_trainer(tmp_path, models_dir=models, **hub_settings(fake_hub)) as (stub, _):
        job = (await stub.CreateJob(request("hub job"))).job
        assert job.base_model == MODEL
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        snapshot, events = await watch_all(stub, job.id)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        assert final.status == pb.JOB_STATUS_COMPLETED, final.error
        downloads = [e for e in events if e.type == pb.EVENT_TYPE_DOWNLOAD]
        assert downloads and all(e.WhichOneof("payload") == "download" for e in downloads)
        last = downloads[-1].download
        assert last.phase == "done" and last.bytes_done == last.bytes_total > 0
        assert last.files_done == last.files_total >= 5
        moving = [e.download for e in downloads if e.download.phase == "downloading"]
        assert any(0 < d.bytes_done < d.bytes_total and d.bytes_per_second > 0 and d.HasField("eta_seconds")
                   for d in moving), moving
        statuses = [e.status_change.to_status for e in events if e.type == pb.EVENT_TYPE_STATUS]
        first_download = events.index(downloads[0])
        training_at = next(i for i, e in enumerate(events) if e.type == pb.EVENT_TYPE_STATUS
                           and e.status_change.to_status == pb.JOB_STATUS_TRAINING)
        assert first_download < training_at and pb.JOB_STATUS_COMPLETED in statuses
        assert hub.is_complete(models / "org--tiny-llama")
        local = (await stub.ListLocalModels(pb.ListLocalModelsRequest())).models
        assert [(m.id, m.source) for m in local] == [(MODEL, "hub")] and local[0].size_bytes > 0
        listed = {m.id: m for m in (await stub.ListBaseModels(pb.ListBaseModelsRequest())).models}
        assert listed[MODEL].available and listed[MODEL].downloaded


async def test_create_names_which_hub_failure(fake_hub, tmp_path):
    async with running_trainer(tmp_path, **hub_settings(fake_hub)) as (stub, _):
        cases = {
            "org/no-such-model": "unknown model id",
            ENCODER: "unsupported architecture",
            GATED: "gated model",
            "bad id with spaces": "not a model hub id",
        }
        for model_id, reason in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateJob(request("x", model_id))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, model_id
            assert reason in err.value.details() and "base_model" in err.value.details(), err.value.details()
        listed = (await stub.ListJobs(pb.ListJobsRequest())).jobs
        assert not listed


async def test_gated_model_with_token_downloads_and_the_token_is_not_echoed(fake_hub, tmp_path):
    models = tmp_path / "models"
    async with running_trainer(tmp_path, models_dir=models, **hub_settings(fake_hub, hub_token=TOKEN)) as (stub, _):
        job = (await stub.CreateJob(request("gated", GATED))).job
        started = await stub.PullBaseModel(pb.PullBaseModelRequest(model_id=GATED))
        assert not started.already_present and started.bytes_total > 0 and started.files_total >= 5
        for _ in range(200):
            local = {m.id: m for m in (await stub.ListLocalModels(pb.ListLocalModelsRequest())).models}
            if GATED in local and local[GATED].source == "hub":
                break
            await asyncio.sleep(0.1)
        assert local[GATED].source == "hub", local
        again = await stub.PullBaseModel(pb.PullBaseModelRequest(model_id=GATED))
        assert again.already_present
        deleted = await stub.DeleteLocalModel(pb.DeleteLocalModelRequest(model_id=GATED))
        assert deleted.freed_bytes > 0 and not (models / "org--gated-llama").exists()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.DeleteLocalModel(pb.DeleteLocalModelRequest(model_id=GATED))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # The job downloads it again (the token reaches the worker), and trains.
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        _, events = await watch_all(stub, job.id)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        assert final.status == pb.JOB_STATUS_COMPLETED, final.error
        assert any(e.type == pb.EVENT_TYPE_DOWNLOAD for e in events)
        assert not any(TOKEN in e.message for e in events)
    # Nowhere on disk: not in job.json, events.jsonl, worker.log, the database.
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


async def test_pull_failures_by_kind(fake_hub, tmp_path):
    async with running_trainer(tmp_path, **hub_settings(fake_hub)) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PullBaseModel(pb.PullBaseModelRequest(model_id="org/nothing"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown model id" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PullBaseModel(pb.PullBaseModelRequest(model_id=GATED))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "gated" in err.value.details()


async def test_hub_access_off_keeps_todays_behaviour(fake_hub, tmp_path):
    async with running_trainer(tmp_path) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateJob(request("x", MODEL))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown base model" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PullBaseModel(pb.PullBaseModelRequest(model_id=MODEL))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "TRAINER_HUB_ENABLED" in err.value.details()
    assert not fake_hub.requests


async def test_a_running_job_keeps_its_model_from_being_deleted(fake_hub, tmp_path):
    fake_hub.rate = 100_000  # the job stays in preparing a few seconds
    async with running_trainer(tmp_path, **hub_settings(fake_hub)) as (stub, _):
        job = (await stub.CreateJob(request("slow", MODEL))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        await watch_all(stub, job.id, until=lambda e: e.type == pb.EVENT_TYPE_DOWNLOAD
                        and e.download.bytes_done > 0)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.DeleteLocalModel(pb.DeleteLocalModelRequest(model_id=MODEL))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and job.id in err.value.details()
        cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))).job
        assert cancelled.status == pb.JOB_STATUS_CANCELLED
        local = {m.id: m for m in (await stub.ListLocalModels(pb.ListLocalModelsRequest())).models}
        assert local[MODEL].source == "partial" and 0 < local[MODEL].size_bytes < local[MODEL].bytes_total


@pytest.mark.parametrize("fault,reason", [
    ("corrupt", "base model download failed (checksum): checksum mismatch for model.safetensors"),
    ("disk", "base model download failed (disk): not enough free disk to download org/tiny-llama: needs"),
])
async def test_a_failed_download_fails_the_job_naming_why(fake_hub, tmp_path, fault, reason):
    import shutil

    settings = hub_settings(fake_hub)
    if fault == "corrupt":
        fake_hub.corrupt.add("model.safetensors")
    else:
        # The create-time check passes (the hub has the model); when the job starts, the disk is too small.
        settings["hub_keep_free_bytes"] = shutil.disk_usage(tmp_path).free
    async with running_trainer(tmp_path, **settings) as (stub, _):
        job = (await stub.CreateJob(request("fails", MODEL))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        await watch_all(stub, job.id)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        assert final.status == pb.JOB_STATUS_FAILED
        assert final.error.startswith(reason), final.error
    if fault == "disk":
        assert not any("/resolve/" in p and p.endswith(".safetensors") for _, p, _ in fake_hub.requests)
