"""Running out of disk, of file size and of memory, for real, in trainer processes started the way production
starts them (``python -m services.trainer``):

- file size: the trainer's ``worker_max_file_bytes`` makes each worker set RLIMIT_FSIZE on itself; a LoRA
  checkpoint bigger than that fails to write (EFBIG);
- memory: a trainer runs under RLIMIT_AS (inherited by its workers); a batch that needs more fails to
  allocate;
- disk full: the trainer runs in its own mount namespace with its jobs folder on a 1 MiB tmpfs (ENOSPC). This
  one needs the right to create a mount namespace (root in a container usually has it); without it the test
  says so and is skipped, the two above still cause a real write/allocation failure everywhere.

Each job must end ``failed`` with the reason, and nothing half-written may look like a finished checkpoint or
adapter (every write goes to a hidden temporary folder that is renamed into place).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from tests.faults.conftest import start_trainer, statuses
from tests.support.net import free_ports
from tests.support.services import grpc_ready
from tests.trainer.conftest import TINY, sft_records, watch_all

pytestmark = pytest.mark.slow

MAX_FILE = 200_000  # a LoRA r=64 checkpoint of the tiny model: adapter ~120 kB (fits), optimizer ~290 kB (not)
MEMORY_LIMIT = 2_300_000_000  # the trainer ~0.6 GB and a tiny-model worker ~1.2 GB of address space fit
BIG = dict(num_epochs=1, max_steps=40, batch_size=2, max_seq_length=128, quantization=pb.QUANTIZATION_NONE,
           lora_r=64, lora_alpha=16, learning_rate=5e-3, gradient_checkpointing=False, dataset_path="sft/train.jsonl",
           checkpoint_every_steps=2)
# One step of 256 sequences of ~500 tokens needs several GB of activations.
HUNGRY = dict(num_epochs=1, batch_size=256, max_seq_length=512, quantization=pb.QUANTIZATION_NONE, lora_r=4,
              gradient_checkpointing=False, dataset_path="long.jsonl")
OOM_REASON = "out of memory: reduce batch_size or max_seq_length, or enable gradient_checkpointing"

LIMIT_AS = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
            "os.execv(sys.argv[1], sys.argv[1:])")
TMPFS = 'mkdir -p "$TRAINER_JOBS_DIR" && mount -t tmpfs -o size=1m tmpfs "$TRAINER_JOBS_DIR" && exec "$@"'


def can_make_mount_namespace() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


def write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def request(name: str, **config) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(name=name, vertical="legal", base_model=TINY,
                               training_config=pb.TrainingConfig(**config))


async def run_jobs(address: str, jobs: dict[str, dict]) -> dict[str, dict]:
    """Creates and starts the jobs, waits for each to end; per job: the job, its log, its artifact listing."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        ids = {}
        for name, config in jobs.items():
            ids[name] = (await stub.CreateJob(request(name, **config))).job.id
            await stub.StartJob(pb.StartJobRequest(job_id=ids[name]))
        logs = await asyncio.wait_for(asyncio.gather(*(watch_all(stub, i) for i in ids.values())), 400)
        out = {}
        for (name, job_id), (_, events) in zip(ids.items(), logs):
            job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
            listing = await stub.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job_id))
            files = {}
            for f in listing.files:
                if f.name.startswith("checkpoints/") and f.name.endswith(".safetensors"):
                    read = stub.ReadArtifact(pb.ReadArtifactRequest(job_id=job_id, name=f.name))
                    chunks = [c.data async for c in read]
                    files[f.name] = b"".join(chunks)
            out[name] = dict(job=job, events=events, listing=listing, weights=files)
        return out


@pytest.fixture(scope="module")
async def limited(tmp_path_factory, tiny_models_dir):
    """Three trainers side by side (their workers' start-ups overlap): one with worker_max_file_bytes and a
    job whose checkpoint is bigger, one under RLIMIT_AS with a job whose batch needs more, and (where a mount
    namespace can be made) one whose jobs folder is a 1 MiB tmpfs, with a job that fills it."""
    names = ["file-limit", "memory-limit"] + (["disk-full"] if can_make_mount_namespace() else [])
    roots = {name: tmp_path_factory.mktemp(name) for name in names}
    for name in names:
        write_jsonl(roots[name] / "data" / "sft" / "train.jsonl", sft_records(24))
    write_jsonl(roots["memory-limit"] / "data" / "long.jsonl",
                [dict(r, input=" ".join([r["input"]] * 12), output=" ".join([r["output"]] * 12))
                 for r in sft_records(256)])
    ports = dict(zip(names, free_ports(len(names))))
    prefixes = {"memory-limit": [sys.executable, "-c", LIMIT_AS.format(MEMORY_LIMIT)],
                "disk-full": ["unshare", "--mount", "--propagation", "private", "sh", "-c", TMPFS, "sh"]}
    extra = {"file-limit": {"worker_max_file_bytes": MAX_FILE}}
    trainers = {name: start_trainer(roots[name], ports[name], tiny_models_dir, label=name, prefix=prefixes.get(name),
                                    **extra.get(name, {})) for name in names}
    for name in names:
        await grpc_ready(trainers[name], f"127.0.0.1:{ports[name]}")
    jobs = {"file-limit": {"file-too-large": BIG}, "memory-limit": {"too-big-a-batch": HUNGRY},
            "disk-full": {"disk-full": BIG}}
    results = await asyncio.gather(*(run_jobs(f"127.0.0.1:{ports[name]}", jobs[name]) for name in names))
    out = {k: v for r in results for k, v in r.items()}
    out["jobs_dir"] = roots["file-limit"] / "jobs"
    return out


def assert_nothing_half_written(result: dict) -> None:
    """Every checkpoint listed is complete (and its weights parse); no temporary folder shows; the
    checkpoint_path is the newest complete one (or none); no adapter."""
    from safetensors.torch import load as load_safetensors

    names = [f.name for f in result["listing"].files]
    assert not any("/." in n or n.startswith(".") for n in names), names
    assert not any(n.startswith("adapter/") for n in names)
    folders = sorted({n.split("/")[1] for n in names if n.startswith("checkpoints/")},
                     key=lambda x: int(x.split("-")[1]))
    for folder in folders:
        present = {n.split("/", 2)[2] for n in names if n.startswith(f"checkpoints/{folder}/")}
        assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pt",
                "trainer_state.json"} <= present, (folder, present)
        weights = load_safetensors(result["weights"][f"checkpoints/{folder}/adapter_model.safetensors"])
        assert weights and all(t.numel() for t in weights.values())
    path = result["listing"].checkpoint_path
    assert path == (f"{result['listing'].data_directory.rsplit('/', 1)[0]}/checkpoints/{folders[-1]}"
                    if folders else "")


async def test_a_file_too_large_fails_the_job_with_the_reason_and_leaves_no_checkpoint(limited):
    r = limited["file-too-large"]
    job = r["job"]
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.error == (f"cannot write checkpoint-2 in {limited['jobs_dir'] / job.id / 'checkpoints'}: "
                         f"file too large (this worker may write files of at most {MAX_FILE} bytes)")
    assert r["events"][-1].status_change.reason == job.error
    assert statuses(r["events"])[-2:] == [pb.JOB_STATUS_TRAINING, pb.JOB_STATUS_FAILED]
    assert r["listing"].checkpoint_path == ""
    assert_nothing_half_written(r)


async def test_out_of_memory_fails_the_job_with_the_advice(limited):
    r = limited["too-big-a-batch"]
    job = r["job"]
    assert job.status == pb.JOB_STATUS_FAILED and job.error == OOM_REASON
    assert r["events"][-1].status_change.reason == OOM_REASON
    assert any(e.type == pb.EVENT_TYPE_ERROR and e.message == OOM_REASON for e in r["events"])


async def test_disk_full_fails_the_job_with_the_reason_and_keeps_only_complete_checkpoints(limited):
    if "disk-full" not in limited:
        pytest.skip("no permission to create a mount namespace with a tmpfs here (unshare --mount)")
    r = limited["disk-full"]
    job = r["job"]
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.error.startswith("cannot write checkpoint-") and job.error.endswith(": no space left on device")
    assert_nothing_half_written(r)
    # It got somewhere before the disk filled up: the checkpoints it could write are listed and usable.
    assert r["listing"].checkpoint_path
