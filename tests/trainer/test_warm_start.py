"""Clone a job and warm-start a new job from an earlier one's adapter or checkpoint, through a real trainer
training the tiny random Llama; and every refusal (unknown source, source not completed, unknown checkpoint,
another base model or adapter shape)."""

from __future__ import annotations

import json

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.trainer.conftest import FAST, TINY, create_request, fake_model_folder, running_trainer, watch_all

pytestmark = pytest.mark.slow


async def train(stub, request) -> pb.Job:
    job = (await stub.CreateJob(request)).job
    await stub.StartJob(pb.StartJobRequest(job_id=job.id))
    await watch_all(stub, job.id)
    done = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
    assert done.status == pb.JOB_STATUS_COMPLETED, done.error
    return done


def losses(running, job_id: str) -> list[float]:
    metrics = json.loads((running.manager.jobs_dir / job_id / "metrics.json").read_text())
    return [x["loss"] for x in metrics["losses"]]


@pytest.fixture(scope="module")
async def source(tmp_path_factory, tiny_models_dir):
    """A trainer with one completed job (trained hard, so its adapter's loss is far below a fresh one's)."""
    tmp = tmp_path_factory.mktemp("warm")
    async with running_trainer(tmp, models_dir=tiny_models_dir) as (stub, running):
        config = dict(FAST, max_steps=12, num_epochs=2, learning_rate=2e-2)
        job = await train(stub, create_request("source", **config))
        yield dict(stub=stub, running=running, job=job, config=config)


async def test_warm_start_continues_from_the_source_adapter(source):
    stub, running, config = source["stub"], source["running"], source["config"]
    src = losses(running, source["job"].id)
    fresh = await train(stub, create_request("fresh", **dict(config, max_steps=2)))
    warm = await train(stub, create_request("warm", **dict(config, max_steps=2, init_from_job=source["job"].id)))
    assert warm.training_config.init_from_job == source["job"].id
    fresh_first, warm_first = losses(running, fresh.id)[0], losses(running, warm.id)[0]
    # The warm job's first step sees the source's final weights: its loss is the source's last ones (the tiny
    # random model plateaus ~0.2 below its start), well below the fresh adapter's first loss (which equals the
    # source's own first loss: same seed, same data).
    assert fresh_first == pytest.approx(src[0], rel=1e-3)
    assert fresh_first - warm_first > 0.1
    assert abs(warm_first - sum(src[-4:]) / 4) < 0.05
    _, events = await watch_all(stub, warm.id)
    assert any("warm start" in e.message and "from" in e.message for e in events)


async def test_warm_start_from_a_checkpoint_loads_its_weights(source, tmp_path):
    from safetensors.torch import load_file

    stub, running, config = source["stub"], source["running"], source["config"]
    job = (await stub.CreateJob(create_request("from-ckpt", **dict(
        config, max_steps=1, init_from_job=source["job"].id, init_from_checkpoint=6)))).job
    assert job.training_config.init_from_checkpoint == 6
    # The weights the worker starts from are the checkpoint's: with learning rate ~0 they come out unchanged.
    job2 = await train(stub, create_request("from-ckpt-frozen", **dict(
        config, max_steps=1, learning_rate=1e-12, lora_dropout=0.0, init_from_job=source["job"].id,
        init_from_checkpoint=6)))
    ckpt = load_file(running.manager.jobs_dir / source["job"].id / "checkpoints/checkpoint-6/adapter_model.safetensors")
    out = load_file(running.manager.jobs_dir / job2.id / "adapter/adapter_model.safetensors")
    assert set(ckpt) == set(out)
    for k in ckpt:
        assert (ckpt[k] - out[k]).abs().max() < 1e-6, k


async def test_warm_start_refusals(source):
    stub, running, config = source["stub"], source["running"], source["config"]
    src = source["job"].id

    async def refused(code, **extra):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateJob(create_request(f"bad-{len(extra)}", **dict(config, **extra)))
        assert err.value.code() == code, err.value.details()
        return err.value.details()

    assert "job-nope" in await refused(grpc.StatusCode.NOT_FOUND, init_from_job="job-nope")
    details = await refused(grpc.StatusCode.INVALID_ARGUMENT, init_from_job=src, init_from_checkpoint=7)
    assert "training_config.init_from_checkpoint" in details and "6" in details and "12" in details
    details = await refused(grpc.StatusCode.INVALID_ARGUMENT, init_from_checkpoint=6)
    assert "training_config.init_from_checkpoint" in details and "init_from_job" in details
    details = await refused(grpc.StatusCode.INVALID_ARGUMENT, init_from_job=src, lora_r=8)
    assert "training_config.lora_r" in details
    # A queued (never trained) job: its adapter does not exist yet.
    queued = (await stub.CreateJob(create_request("queued-source", **config))).job
    details = await refused(grpc.StatusCode.FAILED_PRECONDITION, init_from_job=queued.id)
    assert "queued" in details and "init_from_job" in details
    # Another base model.
    fake_model_folder(running.manager.models_dir, "test/other-llama")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateJob(pb.CreateJobRequest(name="other", base_model="test/other-llama",
                                                 training_config=pb.TrainingConfig(**config, init_from_job=src)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "training_config.init_from_job" in err.value.details() and TINY in err.value.details()


async def test_clone_with_overrides_over_grpc_and_rest(source):
    stub, running = source["stub"], source["running"]
    src = source["job"]
    clone = (await stub.CloneJob(pb.CloneJobRequest(job_id=src.id, overrides=pb.TrainingConfig(
        learning_rate=1e-3, init_from_job=src.id)))).job
    assert clone.status == pb.JOB_STATUS_QUEUED and clone.id != src.id
    assert clone.name == "source (copy)" and clone.base_model == src.base_model and clone.vertical == src.vertical
    assert clone.training_config.learning_rate == pytest.approx(1e-3)
    assert clone.training_config.init_from_job == src.id
    for name in ("lora_r", "batch_size", "max_steps", "max_seq_length", "dataset_path", "seed"):
        assert getattr(clone.training_config, name) == getattr(src.training_config, name), name
    again = (await stub.CloneJob(pb.CloneJobRequest(job_id=src.id))).job
    assert again.name == "source (copy 2)"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CloneJob(pb.CloneJobRequest(job_id="job-missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CloneJob(pb.CloneJobRequest(job_id=src.id, overrides=pb.TrainingConfig(batch_size=0)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "training_config.batch_size" in err.value.details()

    async with gateway_client("127.0.0.1:1", running.address) as api:
        r = await api.post(f"/api/training/jobs/{src.id}/clone",
                           json={"name": "rest-clone", "trainingConfig": {"numEpochs": 5}})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["name"] == "rest-clone" and body["training_config"]["num_epochs"] == 5
        assert body["training_config"]["lora_r"] == src.training_config.lora_r
        r = await api.post(f"/api/training/jobs/{src.id}/clone", json={"name": "rest-clone"})
        assert r.status_code == 409
        r = await api.post("/api/training/jobs/job-missing/clone", json={})
        assert r.status_code == 404
        r = await api.post(f"/api/training/jobs/{src.id}/clone", json={"trainingConfig": {"initFromCheckpoint": 999}})
        assert r.status_code == 422 and "init_from_checkpoint" in r.text
