"""TrainerService through a real gRPC server and stub, for everything that needs no training: validation,
the status machine's refusals, listing, counts, artifacts' confinement, the model catalogue, watch replay."""

from __future__ import annotations

import os
import shutil

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from aragora.training.v1 import trainer_pb2 as pb
from tests.trainer.conftest import DATASET, TINY, create_request, watch_all


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    out = {}
    for detail in status.details:
        br = error_details_pb2.BadRequest()
        detail.Unpack(br)
        out.update({v.field: v.description for v in br.field_violations})
    return out


async def _refused(stub, request, code=grpc.StatusCode.INVALID_ARGUMENT) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateJob(request, timeout=10)
    assert err.value.code() == code, err.value.details()
    return err.value


async def test_create_fills_every_default(trainer_stub):
    stub, _ = trainer_stub
    job = (await stub.CreateJob(pb.CreateJobRequest(name="defaults", vertical="legal", base_model=TINY))).job
    assert job.id.startswith("job-") and job.status == pb.JOB_STATUS_QUEUED
    c = job.training_config
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.num_epochs, c.batch_size) == (8, 16, 0.05, 3, 4)
    assert c.learning_rate == pytest.approx(2e-4)
    assert c.max_seq_length == 512  # the default 2048 capped at the model's limit
    assert c.quantization == pb.QUANTIZATION_4BIT and c.gradient_checkpointing is True
    assert c.method == pb.TRAINING_METHOD_SFT and list(c.target_modules) == ["q_proj", "v_proj"]
    assert not c.HasField("dataset_path") and not c.HasField("max_steps")
    assert job.created_at.seconds > 0 and not job.HasField("started_at") and not job.HasField("loss")


@pytest.mark.parametrize("config,field", [
    (dict(lora_r=0), "training_config.lora_r"),
    (dict(lora_r=-3), "training_config.lora_r"),
    (dict(lora_dropout=1.0), "training_config.lora_dropout"),
    (dict(lora_dropout=-0.1), "training_config.lora_dropout"),
    (dict(learning_rate=0.0), "training_config.learning_rate"),
    (dict(learning_rate=-1e-4), "training_config.learning_rate"),
    (dict(quantization=7), "training_config.quantization"),
    (dict(max_seq_length=513), "training_config.max_seq_length"),
    (dict(dataset_path="/etc/passwd"), "training_config.dataset_path"),
    (dict(dataset_path="../outside.jsonl"), "training_config.dataset_path"),
    (dict(dataset_path="sft/../../outside.jsonl"), "training_config.dataset_path"),
    (dict(dataset_path="sft/missing.jsonl"), "training_config.dataset_path"),
])
async def test_each_bad_field_is_refused_and_nothing_is_created(trainer_stub, tmp_path, config, field):
    stub, running = trainer_stub
    (tmp_path / "outside.jsonl").write_text((tmp_path / "data" / DATASET).read_text())
    err = await _refused(stub, create_request("bad", **config))
    bad = violations(err)
    assert field in bad and bad[field], bad
    assert field.split(".")[-1] in err.details()
    assert (await stub.ListJobs(pb.ListJobsRequest())).total == 0
    assert not any(running.manager.jobs_dir.glob("job-*"))


async def test_unknown_or_unavailable_base_model_and_bad_name(trainer_stub):
    stub, _ = trainer_stub
    err = await _refused(stub, pb.CreateJobRequest(name="x", base_model="acme/nope-7b"))
    assert "unknown base model 'acme/nope-7b'" in violations(err)["base_model"]
    err = await _refused(stub, pb.CreateJobRequest(name="x", base_model="meta-llama/Llama-2-7b-hf"))
    assert "base_model" in violations(err)
    err = await _refused(stub, pb.CreateJobRequest(name="  ", base_model=TINY))
    assert violations(err) == {"name": "is required"}
    # Every bad field at once, not just the first.
    err = await _refused(stub, pb.CreateJobRequest(name="", vertical="../etc", base_model="acme/nope"))
    assert set(violations(err)) == {"name", "vertical", "base_model"}
    assert (await stub.ListJobs(pb.ListJobsRequest())).total == 0


async def test_duplicate_name_is_already_exists(trainer_stub):
    stub, _ = trainer_stub
    await stub.CreateJob(create_request("twin"))
    err = await _refused(stub, create_request("twin", lora_r=4), grpc.StatusCode.ALREADY_EXISTS)
    assert "twin" in err.details()
    assert (await stub.ListJobs(pb.ListJobsRequest())).total == 1


@pytest.mark.parametrize("rpc,request_", [
    ("GetJob", pb.GetJobRequest(job_id="job-nope")),
    ("StartJob", pb.StartJobRequest(job_id="job-nope")),
    ("CancelJob", pb.CancelJobRequest(job_id="job-nope")),
    ("GetJobMetrics", pb.GetJobMetricsRequest(job_id="job-nope")),
    ("GetJobArtifacts", pb.GetJobArtifactsRequest(job_id="job-nope")),
])
async def test_unknown_job_is_not_found(trainer_stub, rpc, request_):
    stub, _ = trainer_stub
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, rpc)(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "job-nope" in err.value.details()


async def test_unknown_job_streams_are_not_found(trainer_stub):
    stub, _ = trainer_stub
    for call in (stub.WatchJob(pb.WatchJobRequest(job_id="job-nope")),
                 stub.ReadArtifact(pb.ReadArtifactRequest(job_id="job-nope", name="events.jsonl"))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_illegal_transitions_name_the_current_status(trainer_stub):
    stub, running = trainer_stub
    job = (await stub.CreateJob(create_request("c"))).job
    cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))).job
    assert cancelled.status == pb.JOB_STATUS_CANCELLED and cancelled.HasField("completed_at")
    for rpc, req in (("StartJob", pb.StartJobRequest(job_id=job.id)),
                     ("CancelJob", pb.CancelJobRequest(job_id=job.id)),
                     ("GetJobMetrics", pb.GetJobMetricsRequest(job_id=job.id))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(stub, rpc)(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is cancelled" in err.value.details()

    # A job whose base model disappeared before it started fails with the reason, and stays failed.
    other = (await stub.CreateJob(create_request("f"))).job
    shutil.rmtree(running.manager.models_dir / TINY.replace("/", "--"))
    failed = (await stub.StartJob(pb.StartJobRequest(job_id=other.id))).job
    assert failed.status == pb.JOB_STATUS_FAILED and "base model unavailable" in failed.error
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CancelJob(pb.CancelJobRequest(job_id=other.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is failed" in err.value.details()


async def test_list_filters_newest_first_and_counts(trainer_stub):
    stub, _ = trainer_stub
    ids = []
    for name, vertical in (("a", "legal"), ("b", "medical"), ("c", "legal")):
        ids.append((await stub.CreateJob(pb.CreateJobRequest(name=name, vertical=vertical, base_model=TINY))).job.id)
    await stub.CancelJob(pb.CancelJobRequest(job_id=ids[0]))
    every = await stub.ListJobs(pb.ListJobsRequest())
    assert [j.id for j in every.jobs] == ids[::-1] and every.total == 3
    legal = await stub.ListJobs(pb.ListJobsRequest(vertical="legal"))
    assert [j.name for j in legal.jobs] == ["c", "a"] and legal.total == 2
    queued = await stub.ListJobs(pb.ListJobsRequest(status=pb.JOB_STATUS_QUEUED))
    assert {j.name for j in queued.jobs} == {"b", "c"}
    limited = await stub.ListJobs(pb.ListJobsRequest(limit=1))
    assert [j.name for j in limited.jobs] == ["c"] and limited.total == 3
    assert (await stub.ListJobs(pb.ListJobsRequest(vertical="legal", status=pb.JOB_STATUS_CANCELLED))).total == 1
    counts = await stub.GetJobCounts(pb.GetJobCountsRequest())
    assert (counts.queued, counts.cancelled, counts.total, counts.training) == (2, 1, 3, 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListJobs(pb.ListJobsRequest(status=42))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_replays_a_finished_job_and_resumes_after_a_sequence(trainer_stub):
    stub, _ = trainer_stub
    job = (await stub.CreateJob(create_request("w"))).job
    await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    snapshot, events = await watch_all(stub, job.id)
    assert snapshot.status == pb.JOB_STATUS_CANCELLED
    assert [e.sequence for e in events] == [1, 2]
    assert events[-1].status_change.to_status == pb.JOB_STATUS_CANCELLED
    assert events[-1].status_change.from_status == pb.JOB_STATUS_QUEUED
    _, rest = await watch_all(stub, job.id, after=1)
    assert [e.sequence for e in rest] == [2]
    _, none = await watch_all(stub, job.id, after=2)
    assert none == []


async def test_artifacts_are_confined_to_the_job_folder(trainer_stub, tmp_path):
    stub, running = trainer_stub
    job = (await stub.CreateJob(create_request("art"))).job
    folder = running.manager.jobs_dir / job.id
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 300_000)
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", folder / "link.txt")
    os.symlink(tmp_path, folder / "linkdir")

    listing = await stub.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job.id))
    files = {f.name: (f.size_bytes, f.type) for f in listing.files}
    assert files == {
        "events.jsonl": (files["events.jsonl"][0], "log"),
        "adapter/adapter_config.json": (2, "config"),
        "adapter/adapter_model.safetensors": (300_000, "weights"),
        "checkpoints/checkpoint-2/optimizer.pt": (1, "checkpoint"),
    }
    assert listing.checkpoint_path == str(folder / "adapter")
    assert listing.data_directory == str(folder / "data")

    chunks = [c async for c in stub.ReadArtifact(
        pb.ReadArtifactRequest(job_id=job.id, name="adapter/adapter_model.safetensors"))]
    assert len(chunks) > 1 and all(c.size_bytes == 300_000 for c in chunks)
    assert b"".join(c.data for c in chunks) == b"\0" * 300_000

    for name, code in (("../../secret.txt", grpc.StatusCode.INVALID_ARGUMENT),
                       ("adapter/../../x", grpc.StatusCode.INVALID_ARGUMENT),
                       (str(tmp_path / "secret.txt"), grpc.StatusCode.INVALID_ARGUMENT),
                       ("", grpc.StatusCode.INVALID_ARGUMENT),
                       ("link.txt", grpc.StatusCode.NOT_FOUND),
                       ("linkdir/secret.txt", grpc.StatusCode.NOT_FOUND),
                       ("adapter", grpc.StatusCode.NOT_FOUND),
                       ("nope.bin", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.ReadArtifact(pb.ReadArtifactRequest(job_id=job.id, name=name)):
                pass
        assert err.value.code() == code, name

    # Without an adapter, the newest COMPLETE checkpoint (its trainer_state.json is written last) is the one.
    shutil.rmtree(folder / "adapter")
    for step in (2, 10):
        (folder / "checkpoints" / f"checkpoint-{step}").mkdir(exist_ok=True)
        (folder / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (folder / "checkpoints" / "checkpoint-12").mkdir()  # incomplete
    listing = await stub.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job.id))
    assert listing.checkpoint_path == str(folder / "checkpoints" / "checkpoint-10")


async def test_base_models_list_the_catalogue_and_local_folders(trainer_stub):
    stub, _ = trainer_stub
    models = {m.id: m for m in (await stub.ListBaseModels(pb.ListBaseModelsRequest())).models}
    smol = models["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert smol.recommended and not smol.available and smol.unavailable_reason
    assert models[TINY].available and models[TINY].max_seq_length == 512
