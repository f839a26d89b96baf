"""Paths from users cannot leave their roots: ``dataset_path`` (the data root), artifact names (the job's
folder), job ids, and the dashboard's static files, each tried with ``..``, absolute paths, symlinks pointing
out, NUL bytes, backslashes, and URL-encoded and double-encoded dots, through REST and through gRPC."""

from __future__ import annotations

import os

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.trainer.conftest import TINY, running_trainer

SECRET = "top secret, outside every root"


@pytest.fixture
async def env(tmp_path):
    """A trainer (fake model folder, data root with a dataset) and the gateway; a secret file outside both
    roots, and symlinks inside them pointing at it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text(SECRET)
    async with running_trainer(tmp_path) as (stub, running):
        data_root = tmp_path / "data"
        (data_root / "link.jsonl").symlink_to(outside / "secret.jsonl")
        (data_root / "linkdir").symlink_to(outside, target_is_directory=True)
        job = (await stub.CreateJob(pb.CreateJobRequest(name="paths", base_model=TINY))).job
        folder = running.manager.jobs_dir / job.id
        (folder / "adapter").mkdir(parents=True)
        (folder / "events.jsonl").write_text("{}\n")
        (folder / "adapter" / "adapter_config.json").write_text("{}")
        (folder / "leak.txt").symlink_to(outside / "secret.jsonl")
        (folder / "linkdir").symlink_to(outside, target_is_directory=True)
        # A checkpoint being written (or left half-written by a crash): hidden, never served.
        (folder / "checkpoints" / ".checkpoint-4.tmp").mkdir(parents=True)
        (folder / "checkpoints" / ".checkpoint-4.tmp" / "adapter_model.safetensors").write_bytes(b"half")
        async with gateway_client("127.0.0.1:1", running.address) as api:
            yield dict(stub=stub, api=api, job=job, folder=folder, outside=outside, tmp=tmp_path)


DATASET_PATHS = [
    "../outside/secret.jsonl",
    "sft/../../outside/secret.jsonl",
    "sft/../../../../../../etc/passwd",
    "/etc/passwd",
    "link.jsonl",                        # a symlink in the data root pointing out
    "linkdir/secret.jsonl",              # through a symlinked folder
    "%2e%2e/outside/secret.jsonl",       # URL-encoded dots are not decoded: a (missing) file of that name
    "%252e%252e/outside/secret.jsonl",   # double-encoded
    "..%2foutside%2fsecret.jsonl",
    "..\\outside\\secret.jsonl",
    "sft/train.jsonl\x00.txt",
]


@pytest.mark.parametrize("dataset_path", DATASET_PATHS)
async def test_dataset_path_cannot_escape_the_data_root(env, dataset_path):
    path = dataset_path
    r = await env["api"].post("/api/training/jobs", json={"name": f"esc-{abs(hash(path))}", "base_model": TINY,
                                                          "training_config": {"dataset_path": path}})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["training_config.dataset_path"], r.text
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env["stub"].CreateJob(pb.CreateJobRequest(
            name=f"esc-grpc-{abs(hash(path))}", base_model=TINY, training_config=pb.TrainingConfig(dataset_path=path)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "training_config.dataset_path" in err.value.details()
    total = (await env["api"].get("/api/training/jobs")).json()["total"]
    assert total == 1  # nothing was created


async def test_an_absolute_dataset_path_inside_the_root_is_fine(env):
    inside = env["tmp"] / "data" / "sft" / "train.jsonl"
    r = await env["api"].post("/api/training/jobs", json={"name": "abs-inside", "base_model": TINY,
                                                          "training_config": {"dataset_path": str(inside)}})
    assert r.status_code == 201, r.text


# (name as sent in the URL, REST status, the name over gRPC, gRPC code)
ARTIFACT_NAMES = [
    ("%2e%2e/%2e%2e/trainer/jobs.db", 422, "../../trainer/jobs.db", grpc.StatusCode.INVALID_ARGUMENT),
    ("%2E%2E%2F%2E%2E%2Ftrainer%2Fjobs.db", 422, "..%2F..%2Ftrainer%2Fjobs.db", grpc.StatusCode.NOT_FOUND),
    ("%252e%252e/%252e%252e/trainer/jobs.db", 404, "%2e%2e/%2e%2e/trainer/jobs.db", grpc.StatusCode.NOT_FOUND),
    ("adapter/%2e%2e/%2e%2e/%2e%2e/outside/secret.jsonl", 422, "adapter/../../../outside/secret.jsonl",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("%2Fetc%2Fpasswd", 422, "/etc/passwd", grpc.StatusCode.INVALID_ARGUMENT),
    ("..%5C..%5Ctrainer%5Cjobs.db", 422, "..\\..\\trainer\\jobs.db", grpc.StatusCode.INVALID_ARGUMENT),
    ("leak.txt", 404, "leak.txt", grpc.StatusCode.NOT_FOUND),                          # symlink out
    ("linkdir/secret.jsonl", 404, "linkdir/secret.jsonl", grpc.StatusCode.NOT_FOUND),  # symlinked folder
    ("events.jsonl%00", 422, "events.jsonl\x00", grpc.StatusCode.INVALID_ARGUMENT),
    ("checkpoints/.checkpoint-4.tmp/adapter_model.safetensors", 404,
     "checkpoints/.checkpoint-4.tmp/adapter_model.safetensors", grpc.StatusCode.NOT_FOUND),
    ("adapter", 404, "adapter", grpc.StatusCode.NOT_FOUND),                            # a folder, not a file
]


@pytest.mark.parametrize(("url_name", "status", "grpc_name", "code"), ARTIFACT_NAMES,
                         ids=[a[0] for a in ARTIFACT_NAMES])
async def test_artifact_names_cannot_escape_the_job_folder(env, url_name, status, grpc_name, code):
    job = env["job"]
    r = await env["api"].get(f"/api/training/jobs/{job.id}/artifacts/{url_name}")
    assert r.status_code == status, r.text
    assert SECRET not in r.text and r.json()["code"] in ("INVALID_ARGUMENT", "NOT_FOUND")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in env["stub"].ReadArtifact(pb.ReadArtifactRequest(job_id=job.id, name=grpc_name)):
            pass
    assert err.value.code() == code, err.value.details()


async def test_a_real_artifact_is_served_and_temporaries_are_not_listed(env):
    job = env["job"]
    r = await env["api"].get(f"/api/training/jobs/{job.id}/artifacts/adapter/adapter_config.json")
    assert r.status_code == 200 and r.text == "{}"
    names = [f["name"] for f in (await env["api"].get(f"/api/training/jobs/{job.id}/artifacts")).json()["files"]]
    assert sorted(names) == ["adapter/adapter_config.json", "events.jsonl"]  # no symlink, no temporary


@pytest.mark.parametrize("job_id", ["%2e%2e", "%2e%2e%2f%2e%2e%2foutside", "..%252f..%252foutside", "%2Fetc"])
async def test_job_ids_are_ids_not_paths(env, job_id):
    for suffix in ("", "/artifacts", "/artifacts/secret.jsonl", "/metrics", "/events"):
        r = await env["api"].get(f"/api/training/jobs/{job_id}{suffix}")
        assert r.status_code in (404, 422), (suffix, r.status_code, r.text)
        assert SECRET not in r.text


@pytest.mark.parametrize("path", ["/training/%2e%2e/%2e%2e/app.py", "/training/assets/%2e%2e/%2e%2e/%2e%2e/config.py",
                                  "/training/assets/%252e%252e/index.html", "/admin/training/..%2F..%2Fapp.py",
                                  "/training/%2Fetc%2Fpasswd.txt"])
async def test_dashboard_files_cannot_escape_the_bundle(env, path):
    r = await env["api"].get(path)
    assert r.status_code == 404, (r.status_code, r.text[:200])
    assert "create_app" not in r.text and "root:" not in r.text


async def test_the_symlinks_were_real(env):
    # The fixture's links do reach the secret: the refusals above are the code's doing, not a broken setup.
    assert (env["folder"] / "leak.txt").read_text() == SECRET
    assert (env["tmp"] / "data" / "linkdir" / "secret.jsonl").read_text() == SECRET
    assert os.path.islink(env["tmp"] / "data" / "link.jsonl")
