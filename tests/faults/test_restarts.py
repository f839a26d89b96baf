"""The trainer killed and restarted under running jobs, for real: separate processes, SIGKILL and SIGTERM.

One story, told once (each phase costs worker start-ups), then checked piece by piece:

1. Trainer T1 (a real ``python -m services.trainer``) runs job A; job C needs the exporter, which is down; a
   gateway process G1 serves a browser-like SSE follower of A; gRPC followers watch A and B. Once A has a
   checkpoint, B starts; while B's worker is still preparing, T1 and A's worker are SIGKILLed together (B's
   worker is left orphaned, as a killed trainer leaves it).
2. T2 starts on the same files: it stops B's orphan, resumes A from its newest checkpoint and B from the
   beginning. The gateway is SIGKILLed and restarted (G2) while the SSE follower is connected. Once A trains
   again, T2 gets SIGTERM: A writes a checkpoint of its last step and the trainer exits.
3. T3 starts: A resumes from that checkpoint and completes. B, once it has trained a step, is cancelled (it
   has shown what it had to; this keeps the CPU for A).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from tests.faults.conftest import (
    Follower,
    SSEFollower,
    start_gateway,
    start_trainer,
    statuses,
    steps,
    worker_pids,
    write_dataset,
)
from tests.support.net import free_ports
from tests.support.services import grpc_ready, http_ready
from tests.support.wait import until
from tests.trainer.conftest import TINY, pid_alive

pytestmark = pytest.mark.slow

EVERY = 10
TOTAL = 80
RECORDS = 2 * TOTAL  # one epoch, so the only checkpoints are the every-10-steps ones
LONG = dict(num_epochs=1, max_steps=TOTAL, batch_size=2, max_seq_length=128, quantization=pb.QUANTIZATION_NONE,
            lora_r=4, lora_alpha=8, learning_rate=5e-3, gradient_checkpointing=False, dataset_path="sft/train.jsonl",
            checkpoint_every_steps=EVERY, seed=11)
RETRY_SECONDS = 3


def request(name: str, **config) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(name=name, vertical="legal", base_model=TINY,
                               training_config=pb.TrainingConfig(**config))


def is_step(e: pb.JobEvent, at_least: int = 1) -> bool:
    return e.WhichOneof("payload") == "step" and e.step.step >= at_least


def latest_step(follower: Follower) -> int:
    last = follower.seen(is_step)
    return last.step.step if last else 0


def segments(events: list[pb.JobEvent]) -> list[list[pb.StepEvent]]:
    """The job's step events split at each resume (a log or warning saying it resumes)."""
    out: list[list[pb.StepEvent]] = [[]]
    for e in events:
        if e.type in (pb.EVENT_TYPE_LOG, pb.EVENT_TYPE_WARNING) and "; resuming " in e.message:
            out.append([])
        elif e.WhichOneof("payload") == "step":
            out[-1].append(e.step)
    return out


@pytest.fixture(scope="module")
async def story(tmp_path_factory, tiny_models_dir):
    root = tmp_path_factory.mktemp("restarts")
    write_dataset(root / "data", "sft/train.jsonl", n=RECORDS)
    trainer_port, gateway_port, dead_exporter = free_ports(3)
    address, base_url = f"127.0.0.1:{trainer_port}", f"http://127.0.0.1:{gateway_port}"
    settings = dict(max_concurrent_jobs=3, exporter_retry_seconds=RETRY_SECONDS, grace_seconds=0.1,
                    exporter_address=f"127.0.0.1:{dead_exporter}")
    out: dict = {"root": root, "address": address, "dead_exporter": dead_exporter}

    # -- phase 1 ---------------------------------------------------------------------------------------------
    t1 = start_trainer(root, trainer_port, tiny_models_dir, label="t1", **settings)
    g1 = start_gateway(root, gateway_port, address, label="g1")
    await grpc_ready(t1, address)
    await http_ready(g1, base_url)
    channel = grpc.aio.insecure_channel(address)
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    a = (await stub.CreateJob(request("resume-a", **LONG))).job
    b = (await stub.CreateJob(request("resume-b", **LONG))).job
    config_c = {k: v for k, v in LONG.items() if k != "dataset_path"}
    c = (await stub.CreateJob(request("needs-exporter", **config_c))).job
    fa, fb, fc = Follower(address, a.id), Follower(address, b.id), Follower(address, c.id)
    sse = SSEFollower(base_url, a.id)
    await until(lambda: sse.frames, 30, "the SSE snapshot")
    await stub.StartJob(pb.StartJobRequest(job_id=a.id))
    await stub.StartJob(pb.StartJobRequest(job_id=c.id))
    await until(lambda: fa.seen(lambda e: e.WhichOneof("payload") == "checkpoint"), 240, "A's first checkpoint")
    await stub.StartJob(pb.StartJobRequest(job_id=b.id))
    await until(lambda: b.id in worker_pids(t1), 30, "B's worker")
    # Kill in the middle of a checkpoint interval, so steps after A's newest checkpoint are in its log.
    await until(lambda: (s := latest_step(fa)) > EVERY and 3 <= s % EVERY <= 7, 120, "A half-way to a checkpoint")
    pids = worker_pids(t1)
    os.killpg(pids[a.id], signal.SIGKILL)
    t1.signal(signal.SIGKILL)
    t1.wait(10)
    out["orphan_b"] = pids[b.id]
    out["orphan_alive_after_kill"] = pid_alive(pids[b.id])
    out["a_before_kill"] = list(fa.events)
    out["b_status_at_kill"] = statuses(fb.events)[-1]
    out["c_failed_in_phase_1"] = bool(fc.events) and statuses(fc.events)[-1] == pb.JOB_STATUS_FAILED

    # -- phase 2 ---------------------------------------------------------------------------------------------
    t2 = start_trainer(root, trainer_port, tiny_models_dir, label="t2", **settings)
    await grpc_ready(t2, address)
    out["a_after_restart"] = (await stub.GetJob(pb.GetJobRequest(job_id=a.id))).job
    out["orphan_alive_after_restart"] = pid_alive(out["orphan_b"])
    n_before = len(fa.events)
    # The gateway dies and comes back while the browser-like follower is connected.
    g1.signal(signal.SIGKILL)
    g1.wait(10)
    g2 = start_gateway(root, gateway_port, address, label="g2")
    await http_ready(g2, base_url)
    resumed_at = await until(lambda: fa.seen(lambda e: "; resuming " in e.message), 60, "A's resume event")
    await until(lambda: [e for e in fa.events[n_before:] if is_step(e)][3:], 240, "A training again")
    t2.signal(signal.SIGTERM)
    out["t2_exit"] = t2.wait(60)
    out["a_resumed_event_phase_2"] = resumed_at

    # -- phase 3 ---------------------------------------------------------------------------------------------
    t3 = start_trainer(root, trainer_port, tiny_models_dir, label="t3", **settings)
    await grpc_ready(t3, address)
    out["a_after_graceful_restart"] = (await stub.GetJob(pb.GetJobRequest(job_id=a.id))).job
    await until(lambda: fb.seen(is_step), 240, "B trained a step")
    out["b_cancelled"] = (await stub.CancelJob(pb.CancelJobRequest(job_id=b.id), timeout=30)).job
    await asyncio.wait_for(asyncio.gather(fa.task, fb.task, fc.task, sse.task), 300)
    jobs = {j.id: (await stub.GetJob(pb.GetJobRequest(job_id=j.id))).job for j in (a, b, c)}
    logs = {}
    for j in (a, b, c):
        logs[j.id] = [item.event async for item in stub.WatchJob(pb.WatchJobRequest(job_id=j.id))
                      if item.WhichOneof("item") == "event"]
    await channel.close()
    t3.signal(signal.SIGTERM)
    t3.wait(30)
    g2.signal(signal.SIGTERM)
    out.update(a=jobs[a.id], b=jobs[b.id], c=jobs[c.id], log_a=logs[a.id], log_b=logs[b.id], log_c=logs[c.id],
               fa=fa, fb=fb, fc=fc, sse=sse, folder_a=root / "jobs" / a.id)
    return out


async def test_a_killed_trainer_resumes_the_job_from_its_last_checkpoint(story):
    log = story["log_a"]
    # What the stored log holds from before the kill (up to the resume warning): the follower's copy at the kill
    # may lack the last event or two, stored but still on their way to it.
    resume_at = next(i for i, e in enumerate(log) if "; resuming " in e.message)
    kill = log[:resume_at]
    assert len(story["a_before_kill"]) <= len(kill)
    checkpoints = [e.checkpoint.step for e in kill if e.WhichOneof("payload") == "checkpoint"]
    last_step = max(s.step for s in steps(kill))
    # Right after the restart, before the resumed worker reports anything: same id, still training, and
    # its step is the checkpoint's.
    after = story["a_after_restart"]
    assert after.status == pb.JOB_STATUS_TRAINING
    assert after.current_step == checkpoints[-1] < last_step
    resumed = story["a_resumed_event_phase_2"]
    assert resumed.type == pb.EVENT_TYPE_WARNING
    assert resumed.message.startswith("the trainer stopped unexpectedly while the job was training (restart 1 of")
    assert f"resuming from checkpoint-{checkpoints[-1]} (step {checkpoints[-1]} of {TOTAL})" in resumed.message
    # The step count continues from the checkpoint's step.
    first, second, third = segments(log)
    assert first[-1].step == last_step and second[0].step == checkpoints[-1] + 1
    assert story["a"].status == pb.JOB_STATUS_COMPLETED and story["a"].current_step == TOTAL
    assert statuses(log) == [pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_TRAINING,
                             pb.JOB_STATUS_COMPLETED]


async def test_the_resumed_steps_repeat_the_lost_ones_exactly(story):
    """Optimizer, scheduler, RNG and data position restored: the steps recomputed after the kill have the
    very losses and learning rates they had before it."""
    first, second, _ = segments(story["log_a"])
    before = {s.step: s for s in first}
    redone = [s for s in second if s.step in before]
    assert redone, "no step between the checkpoint and the kill was repeated"
    for s in redone:
        assert s.loss == pytest.approx(before[s.step].loss, rel=1e-4, abs=1e-5), s.step
        assert s.learning_rate == pytest.approx(before[s.step].learning_rate, rel=1e-9), s.step
    # The linear schedule went on from where it was, it did not restart at the base rate.
    assert second[0].learning_rate < first[0].learning_rate


async def test_a_job_without_a_checkpoint_restarts_from_the_beginning(story):
    assert story["b_status_at_kill"] == pb.JOB_STATUS_PREPARING
    assert story["orphan_alive_after_kill"], "B's worker should outlive a SIGKILLed trainer (own session)"
    assert not story["orphan_alive_after_restart"], "the restarted trainer must stop the orphaned worker"
    log = story["log_b"]
    resumed = [e for e in log if "; resuming " in e.message]
    assert "resuming from the beginning (no checkpoint yet)" in resumed[0].message
    segs = segments(log)
    assert segs[0] == [] and [seg for seg in segs if seg][0][0].step == 1  # no step before the kill, then 1
    # Then cancelled by the test (a resumed job cancels like any other).
    assert story["b_cancelled"].status == story["b"].status == pb.JOB_STATUS_CANCELLED
    assert statuses(log) == [pb.JOB_STATUS_QUEUED, pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_TRAINING,
                             pb.JOB_STATUS_CANCELLED]


async def test_sigterm_checkpoints_running_jobs_and_they_resume_on_start(story):
    assert story["t2_exit"] == 0
    log = story["log_a"]
    _, second, third = segments(log)
    resumes = [i for i, e in enumerate(log) if "; resuming " in e.message]
    stop = [e for e in log[:resumes[-1]] if e.WhichOneof("payload") == "checkpoint"]
    # The newest checkpoint before the restart is of the last finished step: written on stopping ("(stopping)"),
    # or the periodic one when the stop came right after it (nothing newer to write). Its step is the last one
    # reported, or one whose report the stop overtook (the worker exits right after the checkpoint). Nothing
    # trained is lost either way.
    assert stop and stop[-1].checkpoint.step in (second[-1].step, second[-1].step + 1)
    assert "(stopping)" in stop[-1].message or stop[-1].checkpoint.step % EVERY == 0
    assert any(e.message == "the trainer stopped; the worker ended (exit code 143)" for e in log)
    after = story["a_after_graceful_restart"]
    assert after.status == pb.JOB_STATUS_TRAINING and after.current_step == stop[-1].checkpoint.step
    resumed = [e for e in log if "; resuming " in e.message][-1]
    assert resumed.type == pb.EVENT_TYPE_LOG  # a clean stop is no crash: it does not count against max_resumes
    assert resumed.message.startswith(
        f"the trainer restarted while the job was training; resuming from checkpoint-{stop[-1].checkpoint.step} ")
    assert third[0].step == stop[-1].checkpoint.step + 1


async def test_the_event_log_keeps_every_event(story):
    for key in ("log_a", "log_b", "log_c"):
        log = story[key]
        assert [e.sequence for e in log] == list(range(1, len(log) + 1)), key
    # Everything seen before the kill is still there, unchanged.
    before = story["a_before_kill"]
    assert [e.SerializeToString() for e in story["log_a"][:len(before)]] == [e.SerializeToString() for e in before]
    lines = [json.loads(x) for x in (story["folder_a"] / "events.jsonl").read_text().splitlines()]
    assert [x["sequence"] for x in lines] == [e.sequence for e in story["log_a"]]
    assert [x["message"] for x in lines] == [e.message for e in story["log_a"]]


async def test_followers_that_reconnect_with_their_last_sequence_miss_nothing(story):
    for follower, key in ((story["fa"], "log_a"), (story["fb"], "log_b"), (story["fc"], "log_c")):
        got = [e.SerializeToString() for e in follower.events]
        assert got == [e.SerializeToString() for e in story[key]]
    assert story["fa"].connects >= 3  # it did lose the trainer twice


async def test_an_sse_client_survives_trainer_and_gateway_restarts(story):
    sse = story["sse"]
    ids = [f["id"] for f in sse.events]
    assert ids == [e.sequence for e in story["log_a"]]
    assert sse.frames[-1] == {"id": None, "event": "end", "data": {"job_id": story["a"].id, "status": "completed"}}
    # It was cut off and refused while the services were down, and came back each time.
    assert sum(1 for s in sse.statuses if s == 200) >= 3
    assert any(s != 200 for s in sse.statuses)


async def test_exporter_down_while_preparing_fails_after_bounded_retries(story):
    c, log = story["c"], story["log_c"]
    assert story["c_failed_in_phase_1"]
    reason = f"exporter unavailable at 127.0.0.1:{story['dead_exporter']}: "
    assert c.status == pb.JOB_STATUS_FAILED and c.error.startswith(reason)
    assert f"over {RETRY_SECONDS} s" in c.error
    warnings = [e.message for e in log if e.type == pb.EVENT_TYPE_WARNING]
    assert any(f"retrying for up to {RETRY_SECONDS} s" in w for w in warnings)
    assert statuses(log)[-2:] == [pb.JOB_STATUS_PREPARING, pb.JOB_STATUS_FAILED]
    # The jobs that had their data trained on, untouched by the exporter's absence.
    assert story["a"].status == pb.JOB_STATUS_COMPLETED and story["b"].status == pb.JOB_STATUS_CANCELLED
