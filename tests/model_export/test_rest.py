"""The export routes and resumable artifact downloads through the gateway's ASGI app, talking real gRPC to the
trainer of the shared trained job: start -> SSE progress -> listed artifact -> a download interrupted and resumed
with Range, and the REST refusals."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import gateway_client
from tests.trainer.conftest import LONG, parse_sse

pytestmark = pytest.mark.slow


@pytest.fixture
async def api(trained_job):
    async with gateway_client("127.0.0.1:1", trained_job["running"].address) as client:
        yield client


async def test_start_follow_list_and_resume_a_download(api, trained_job):
    job_id = trained_job["job"].id
    r = await api.post(f"/api/training/jobs/{job_id}/exports", json={"kind": "gguf_f16"})
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["kind"] == "gguf_f16" and started["status"] == "running" and started["files"] == []

    sse = await api.get(f"/api/training/jobs/{job_id}/exports/gguf_f16/events", timeout=300)
    assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(sse.text)
    assert frames[0]["event"] == "snapshot" and frames[-1]["event"] == "end"
    assert frames[-1]["data"]["status"] == "completed"
    progress = [f for f in frames if f["event"] == "progress"]
    assert [f["id"] for f in progress] == list(range(1, len(progress) + 1))
    assert any(f["data"]["phase"] == "gguf_f16" for f in progress) and progress[-1]["data"]["progress"] == 1.0
    # Resuming the event stream after the first event replays exactly the rest.
    again = parse_sse((await api.get(f"/api/training/jobs/{job_id}/exports/gguf_f16/events?after=1")).text)
    assert [f["id"] for f in again if f["event"] == "progress"] == [f["id"] for f in progress[1:]]

    export = (await api.get(f"/api/training/jobs/{job_id}/exports/gguf_f16")).json()
    assert export["status"] == "completed" and export["checks"]["gguf_f16"]["tokenizer"] == "gpt2"
    name = export["files"][0]
    assert name == "export/export-e2e-f16.gguf"
    listing = (await api.get(f"/api/training/jobs/{job_id}/exports")).json()
    assert "gguf_f16" in {e["kind"] for e in listing["exports"]}
    artifacts = {f["name"]: f for f in (await api.get(f"/api/training/jobs/{job_id}/artifacts")).json()["files"]}
    assert artifacts[name]["type"] == "weights" and artifacts[name]["size_bytes"] == export["size_bytes"]

    url = f"/api/training/jobs/{job_id}/artifacts/{name}"
    full = await api.get(url)
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    size = int(full.headers["content-length"])
    assert size == len(full.content) == export["size_bytes"]
    assert full.content == (trained_job["folder"] / name).read_bytes()
    etag = full.headers["etag"]

    # An interrupted download: the client read the first part, then resumes from where it stopped.
    cut = size // 3
    async with api.stream("GET", url) as resp:
        got = b""
        async for chunk in resp.aiter_bytes():
            got += chunk
            if len(got) >= cut:
                break
    got = got[:cut]
    resumed = await api.get(url, headers={"Range": f"bytes={cut}-", "If-Range": etag})
    assert resumed.status_code == 206
    assert resumed.headers["content-range"] == f"bytes {cut}-{size - 1}/{size}"
    assert int(resumed.headers["content-length"]) == size - cut
    assert hashlib.sha256(got + resumed.content).digest() == hashlib.sha256(full.content).digest()

    middle = await api.get(url, headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == full.content[10:20]
    assert middle.headers["content-range"] == f"bytes 10-19/{size}"
    tail = await api.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == full.content[-100:]
    past = await api.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    assert past.json()["errors"][0]["field"] == "Range"
    # A part of a file that has changed since (another ETag) is not what the client wants: the whole file.
    stale = await api.get(url, headers={"Range": f"bytes={cut}-", "If-Range": '"0-0"'})
    assert stale.status_code == 200 and stale.content == full.content
    # Several ranges or a malformed one: ignored, the whole file.
    assert (await api.get(url, headers={"Range": "bytes=0-1,5-6"})).content == full.content
    assert (await api.get(url, headers={"Range": "bytes=9-3"})).status_code == 200


async def test_rest_refusals(api, trained_job):
    job_id = trained_job["job"].id
    r = await api.post(f"/api/training/jobs/{job_id}/exports", json={"kind": "gguf_q4"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"
    r = await api.post(f"/api/training/jobs/{job_id}/exports", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"
    assert (await api.post("/api/training/jobs/job-nope/exports", json={"kind": "merged"})).status_code == 404
    queued = (await api.post("/api/training/jobs", json={"name": "rest-queued", "base_model": "test/tiny-llama",
                                                         "training_config": {"dataset_path": LONG["dataset_path"]}}))
    r = await api.post(f"/api/training/jobs/{queued.json()['id']}/exports", json={"kind": "merged"})
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    r = await api.get(f"/api/training/jobs/{queued.json()['id']}/exports/merged")
    assert r.status_code == 404
    r = await api.delete(f"/api/training/jobs/{job_id}/exports/gguf_q4")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"
    r = await api.get(f"/api/training/jobs/{job_id}/artifacts/export/nothing.gguf", headers={"Range": "bytes=5-"})
    assert r.status_code == 404


async def test_cli_exports_with_a_progress_bar(trained_job):
    import asyncio
    import os
    import sys

    job = trained_job["job"]
    env = {k: v for k, v in os.environ.items() if k != "TRAINER_API_TOKEN"}  # this trainer has no token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.trainer", "export", job.id, "merged", "--address",
        trained_job["running"].address, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err.decode()
    assert "export/merged/model.safetensors" in out.decode().split()
    assert "100%" in err.decode() and f"{job.id} merged: completed" in err.decode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.trainer", "export", "job-nope", "merged", "--address",
        trained_job["running"].address, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2 and "job-nope" in err.decode()
