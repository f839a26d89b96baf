"""Real training jobs end to end: real worker processes training the tiny random Llama, watched over real gRPC
and SSE, cancelled, killed, queued, and found mid-flight by a restarted trainer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.conftest import gateway_client
from tests.support.wait import until as wait_for
from tests.trainer.conftest import FAST, LONG, TINY, create_request, parse_sse, pid_alive, running_trainer, watch_all

pytestmark = pytest.mark.slow

def statuses(events) -> list[int]:
    return [e.status_change.to_status for e in events if e.WhichOneof("payload") == "status_change"]


def key(e: pb.JobEvent) -> tuple:
    return e.sequence, e.type, e.message, e.SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
async def trained(tmp_path_factory, tiny_models_dir):
    """One job trained to completion while two watchers, a watcher that drops and reconnects, and a browser
    (SSE through the gateway) follow it live. The trainer stays up for the tests that inspect the result."""
    tmp = tmp_path_factory.mktemp("trained")
    async with running_trainer(tmp, models_dir=tiny_models_dir) as (stub, running):
        async with gateway_client("127.0.0.1:1", running.address) as api:
            job = (await stub.CreateJob(create_request("e2e", **FAST))).job
            w1 = asyncio.create_task(watch_all(stub, job.id))
            w2 = asyncio.create_task(watch_all(stub, job.id))
            first_step = asyncio.create_task(watch_all(stub, job.id, until=lambda e: e.HasField("step")))
            sse = asyncio.create_task(api.get(f"/api/training/jobs/{job.id}/events", timeout=300))
            await wait_for(lambda: running.manager.hub.watchers(job.id) >= 3, what="watchers subscribed")
            started = (await stub.StartJob(pb.StartJobRequest(job_id=job.id))).job
            _, dropped = await asyncio.wait_for(first_step, 300)
            (snap1, events1), (snap2, events2) = await asyncio.wait_for(asyncio.gather(w1, w2), 300)
            # The dropped watcher comes back after the job ended and asks for what it missed.
            _, resumed = await watch_all(stub, job.id, after=dropped[-1].sequence)
            sse_live = await sse
            yield dict(stub=stub, running=running, api=api, job=job, started=started, events=events1,
                       events2=events2, snapshots=(snap1, snap2), dropped=dropped, resumed=resumed, sse=sse_live,
                       final=(await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job,
                       folder=running.manager.jobs_dir / job.id)


async def test_events_stream_in_order_to_completed(trained):
    events, final = trained["events"], trained["final"]
    assert trained["started"].status == pb.JOB_STATUS_PREPARING  # a slot was free
    assert all(s.status == pb.JOB_STATUS_QUEUED for s in trained["snapshots"])
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert statuses(events) == [pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_TRAINING,
                                pb.JOB_STATUS_COMPLETED]
    steps = [e.step for e in events if e.WhichOneof("payload") == "step"]
    assert [s.step for s in steps] == list(range(1, 7)) and all(s.total_steps == 6 for s in steps)
    assert all(s.loss > 0 and s.learning_rate > 0 and s.examples_seen > 0 for s in steps)
    assert steps[-1].progress == pytest.approx(1.0) and steps[-1].epoch == pytest.approx(1.0)
    assert any(e.WhichOneof("payload") == "checkpoint" for e in events)
    # Nothing follows the terminal status event.
    assert events[-1].status_change.to_status == pb.JOB_STATUS_COMPLETED

    assert final.status == pb.JOB_STATUS_COMPLETED and final.error == ""
    assert (final.current_step, final.total_steps, final.current_epoch, final.progress) == (6, 6, 1, 1.0)
    assert final.loss == pytest.approx(steps[-1].loss) and final.training_examples == 12
    assert final.started_at.ToDatetime() <= final.completed_at.ToDatetime()


async def test_two_watchers_see_the_same_events_in_the_same_order(trained):
    assert [key(e) for e in trained["events"]] == [key(e) for e in trained["events2"]]


async def test_a_reconnecting_watcher_gets_exactly_what_it_missed(trained):
    dropped, resumed, everything = trained["dropped"], trained["resumed"], trained["events"]
    assert dropped[-1].HasField("step")
    assert [key(e) for e in dropped + resumed] == [key(e) for e in everything]


async def test_event_log_is_persisted_in_events_jsonl(trained):
    lines = [json.loads(ln) for ln in (trained["folder"] / "events.jsonl").read_text().splitlines()]
    assert [ln["sequence"] for ln in lines] == [e.sequence for e in trained["events"]]
    assert [ln["message"] for ln in lines] == [e.message for e in trained["events"]]
    step = next(ln for ln in lines if ln["type"] == "step")
    assert {"epoch", "step", "total_steps", "loss", "learning_rate", "examples_seen", "tokens_per_second",
            "progress", "extra"} <= set(step)


async def test_sse_live_and_resumed_with_last_event_id(trained):
    api, job, events = trained["api"], trained["job"], trained["events"]
    r = trained["sse"]
    assert r.status_code == 200
    frames = parse_sse(r.text)
    assert frames[0]["event"] == "snapshot" and frames[0]["data"]["id"] == job.id
    assert [f["id"] for f in frames[1:-1]] == [e.sequence for e in events]
    assert frames[-1] == {"id": None, "event": "end", "data": {"job_id": job.id, "status": "completed"}}
    step = next(f for f in frames if f["event"] == "step")["data"]
    assert set(step) == {"sequence", "time", "type", "message", "epoch", "step", "total_steps", "loss",
                         "learning_rate", "examples_seen", "tokens_per_second", "progress", "extra"}

    cut = events[len(events) // 2].sequence
    r = await api.get(f"/api/training/jobs/{job.id}/events", headers={"Last-Event-ID": str(cut)})
    resumed = parse_sse(r.text)
    assert [f["id"] for f in resumed[1:-1]] == [e.sequence for e in events if e.sequence > cut]
    assert resumed[-1]["event"] == "end"


async def test_artifacts_listed_and_downloadable(trained):
    api, job, folder = trained["api"], trained["job"], trained["folder"]
    listing = (await api.get(f"/api/training/jobs/{job.id}/artifacts")).json()
    files = {f["name"]: f for f in listing["files"]}
    assert files["adapter/adapter_config.json"]["type"] == "config"
    assert files["adapter/adapter_model.safetensors"]["type"] == "weights"
    assert any(f["type"] == "tokenizer" for f in listing["files"])
    assert files["data/train.jsonl"]["type"] == "data" and files["events.jsonl"]["type"] == "log"
    assert files["metrics.json"]["type"] == "metrics"
    assert any(n.startswith("checkpoints/checkpoint-") for n in files)
    assert listing["checkpoint_path"] == str(folder / "adapter")
    assert listing["data_directory"] == str(folder / "data")
    for name, info in files.items():
        assert info["size_bytes"] == (folder / name).stat().st_size

    r = await api.get(f"/api/training/jobs/{job.id}/artifacts/adapter/adapter_model.safetensors")
    assert r.status_code == 200 and r.content == (folder / "adapter" / "adapter_model.safetensors").read_bytes()
    r = await api.get(f"/api/training/jobs/{job.id}/artifacts/data/train.jsonl")
    assert len(r.text.splitlines()) == 12


async def test_metrics_of_the_completed_job(trained):
    api, job, final = trained["api"], trained["job"], trained["final"]
    r = await api.get(f"/api/training/jobs/{job.id}/metrics")
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["job_id"] == job.id and m["status"] == "completed"
    assert (m["training_data_examples"], m["training_data_debates"]) == (12, 6)
    assert m["final_loss"] == pytest.approx(final.loss)
    # Nothing the worker did not measure is made up.
    written = json.loads((trained["folder"] / "metrics.json").read_text())
    for name in ("elo_rating", "win_rate"):
        assert (m[name] is None) == (written.get(name) is None)


async def test_a_completed_job_cannot_start_or_cancel(trained):
    stub, job = trained["stub"], trained["job"]
    for call in (stub.StartJob(pb.StartJobRequest(job_id=job.id)), stub.CancelJob(pb.CancelJobRequest(job_id=job.id))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is completed" in err.value.details()


async def test_the_adapter_loads_its_lora_weights_moved_and_the_base_did_not(trained, tiny_models_dir):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = trained["folder"] / "adapter"
    base_dir = tiny_models_dir / TINY.replace("/", "--")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = PeftModel.from_pretrained(base, adapter_dir)

    saved = load_file(adapter_dir / "adapter_model.safetensors")
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    # PEFT initialises lora_B to zeros: training moved every one of them.
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
    assert all("lora_" in k for k in saved), "the adapter holds only LoRA weights"

    base_after = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                  for k, v in model.state_dict().items() if "lora_" not in k}
    assert set(before) <= set(base_after)
    assert all(torch.equal(before[k], base_after[k]) for k in before), "base weights changed"

    tok = AutoTokenizer.from_pretrained(adapter_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "Should the court rule?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
        adapted = model(**ids).logits
        with model.disable_adapter():
            plain = model(**ids).logits
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert not torch.allclose(adapted, plain), "the adapter changes nothing"


async def test_cli_watch_reports_the_final_status(trained):
    job, running = trained["job"], trained["running"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.trainer", "watch", job.id, "--address", running.address,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"{job.id}: completed" in text and "6/6" in text and "loss" in text


async def test_cancel_mid_training_ends_the_worker(tmp_path, tiny_models_dir):
    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        job = (await stub.CreateJob(create_request("cancel-me", **LONG))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        watcher = asyncio.create_task(watch_all(stub, job.id))
        await watch_all(stub, job.id, until=lambda e: e.HasField("step") and e.step.step >= 3)
        pid = running.manager.running_pid(job.id)
        assert pid and pid_alive(pid)

        cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id=job.id), timeout=30)).job
        assert cancelled.status == pb.JOB_STATUS_CANCELLED
        assert not pid_alive(pid), "the worker is still running after CancelJob returned"
        _, events = await asyncio.wait_for(watcher, 30)
        # This watcher joined while events were flowing: replay then live, no gap, no repeat.
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert statuses(events)[-1] == pb.JOB_STATUS_CANCELLED
        assert events[-1].status_change.reason == "cancelled by user"
        # Partial checkpoints stay and are listed.
        names = [f.name for f in (await stub.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job.id))).files]
        assert any(n.startswith("checkpoints/checkpoint-") for n in names)
        assert running.manager.hub.watchers(job.id) == 0


async def test_worker_killed_by_sigkill_fails_the_job_with_the_reason(tmp_path, tiny_models_dir):
    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        job = (await stub.CreateJob(create_request("kill-me", **LONG))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        await watch_all(stub, job.id, until=lambda e: e.HasField("step"))
        os.kill(running.manager.running_pid(job.id), signal.SIGKILL)
        _, events = await asyncio.wait_for(watch_all(stub, job.id), 30)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        assert final.status == pb.JOB_STATUS_FAILED and final.error == "worker killed by signal 9"
        assert events[-1].status_change.reason == "worker killed by signal 9"
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert statuses(events)[-2:] == [pb.JOB_STATUS_TRAINING, pb.JOB_STATUS_FAILED]


async def test_concurrency_one_keeps_later_jobs_queued_and_starts_them_in_order(tmp_path, tiny_models_dir):
    async with running_trainer(tmp_path, models_dir=tiny_models_dir, max_concurrent_jobs=1) as (stub, running):
        a, b, c = [(await stub.CreateJob(create_request(n, **LONG))).job for n in "abc"]
        assert (await stub.StartJob(pb.StartJobRequest(job_id=a.id))).job.status == pb.JOB_STATUS_PREPARING
        # c asks before b: it starts before b.
        assert (await stub.StartJob(pb.StartJobRequest(job_id=c.id))).job.status == pb.JOB_STATUS_QUEUED
        assert (await stub.StartJob(pb.StartJobRequest(job_id=b.id))).job.status == pb.JOB_STATUS_QUEUED
        counts = await stub.GetJobCounts(pb.GetJobCountsRequest())
        assert (counts.preparing + counts.training, counts.queued) == (1, 2)
        _, events = await watch_all(stub, c.id, until=lambda e: e.type == pb.EVENT_TYPE_LOG)
        assert "waiting for a free worker slot" in events[-1].message and "position 1" in events[-1].message

        async def status(job_id):
            return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.status

        await stub.CancelJob(pb.CancelJobRequest(job_id=a.id), timeout=30)
        await wait_for(lambda: running.manager.running_pid(c.id), what="c to start")
        assert await status(b.id) == pb.JOB_STATUS_QUEUED
        await stub.CancelJob(pb.CancelJobRequest(job_id=c.id), timeout=30)
        await wait_for(lambda: running.manager.running_pid(b.id), what="b to start")
        await stub.CancelJob(pb.CancelJobRequest(job_id=b.id), timeout=30)
        assert {await status(j.id) for j in (a, b, c)} == {pb.JOB_STATUS_CANCELLED}


async def test_a_restarted_trainer_resumes_the_jobs_it_left_running(tmp_path, tiny_models_dir):
    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        job = (await stub.CreateJob(create_request("orphan", **LONG))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        pid = running.manager.running_pid(job.id)
        await running.stop(0.5)  # the trainer stops: it ends its worker and leaves the job for the next start
        assert not pid_alive(pid)
    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        # Resumed (tests/faults covers kills, checkpoints and the step count): same id, not failed, a new worker.
        resumed = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        assert resumed.status in (pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_TRAINING) and resumed.error == ""
        await wait_for(lambda: running.manager.running_pid(job.id), what="the resumed worker")
        await stub.CancelJob(pb.CancelJobRequest(job_id=job.id), timeout=30)
        snapshot, events = await watch_all(stub, job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert any("the trainer restarted while the job was" in e.message and "; resuming " in e.message
                   for e in events)
        assert statuses(events)[-1] == pb.JOB_STATUS_CANCELLED
