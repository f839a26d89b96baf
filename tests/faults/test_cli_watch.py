"""``python -m services.trainer watch JOB_ID`` itself, as a real subprocess, through a real crash of the trainer
and its worker mid-job and a restart: its own reconnect loop (``services/trainer/cli.py``: ``RETRYABLE``,
``retry_seconds``) meets the dropped connection, reconnects after the last event it saw, prints every status
change, warning and checkpoint of the job's stored log exactly once and in order, and exits 0 with the job's
final state."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.trainer.cli import STATUS
from tests.faults.conftest import (
    start_trainer,
    worker_pids,
    write_dataset,
)
from tests.support.net import free_ports
from tests.support.services import REPO, grpc_ready
from tests.support.wait import until
from tests.trainer.conftest import TINY

pytestmark = pytest.mark.slow

EVERY = 5
TOTAL = 30
CONFIG = dict(num_epochs=1, max_steps=TOTAL, batch_size=2, max_seq_length=64, quantization=pb.QUANTIZATION_NONE,
              lora_r=4, lora_alpha=8, gradient_checkpointing=False, dataset_path="sft/train.jsonl",
              checkpoint_every_steps=EVERY, seed=5)
PRINTED = re.compile(r"^(status|warning|error|checkpoint): ")


def printed_lines(output: str) -> list[str]:
    """What the CLI wrote above its progress bar (the bar redraws with carriage returns in between)."""
    return [part.strip() for line in output.splitlines() for part in line.split("\r") if PRINTED.match(part.strip())]


def expected_lines(events: list[pb.JobEvent]) -> list[str]:
    """What the CLI prints for each event of the stored log (as ``cli.watch`` words it)."""
    out = []
    for e in events:
        kind = e.WhichOneof("payload")
        if kind == "status_change":
            change = e.status_change
            out.append(f"status: {STATUS[change.to_status]}" + (f" ({change.reason})" if change.reason else ""))
        elif e.type in (pb.EVENT_TYPE_WARNING, pb.EVENT_TYPE_ERROR):
            out.append(f"{'warning' if e.type == pb.EVENT_TYPE_WARNING else 'error'}: {e.message}")
        elif kind == "checkpoint":
            out.append(f"checkpoint: {e.checkpoint.path}")
    return out


async def test_the_watch_cli_reconnects_through_a_trainer_restart_and_misses_nothing(tmp_path, tiny_models_dir):
    write_dataset(tmp_path / "data", "sft/train.jsonl", n=2 * TOTAL)
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    trainer = start_trainer(tmp_path, port, tiny_models_dir, label="t1")
    await grpc_ready(trainer, address)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = pb.CreateJobRequest(name="watched", vertical="legal", base_model=TINY,
                                      training_config=pb.TrainingConfig(**CONFIG))
        job = (await stub.CreateJob(request)).job

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TRAINER_API_TOKEN", None)
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.trainer", "watch", job.id, "--address", address, cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output: list[str] = []

    async def read() -> None:
        while chunk := await cli.stdout.read(4096):
            output.append(chunk.decode("utf-8", errors="replace"))

    reader = asyncio.get_running_loop().create_task(read())
    try:
        # The CLI is connected (it printed the queued job's first event) before the job starts, so it follows
        # the training live and the trainer dies in the middle of it.
        await until(lambda: printed_lines("".join(output))[:1] == ["status: queued (created)"], 120,
                    "the CLI to connect")
        async with grpc.aio.insecure_channel(address) as channel:
            await trainer_pb2_grpc.TrainerServiceStub(channel).StartJob(pb.StartJobRequest(job_id=job.id))
        await until(lambda: any(ln.startswith("checkpoint: ") for ln in printed_lines("".join(output))), 240,
                    "the CLI to print a checkpoint")
        # The trainer and its worker die together (a container or machine crash; an orphaned worker would
        # train on until the next trainer stops it). The CLI's stream drops: UNAVAILABLE while it is down.
        os.killpg(worker_pids(trainer)[job.id], signal.SIGKILL)
        trainer.signal(signal.SIGKILL)
        trainer.wait(10)
        trainer = start_trainer(tmp_path, port, tiny_models_dir, label="t2")  # well within retry_seconds (30)
        rc = await asyncio.wait_for(cli.wait(), 300)
        await reader
    finally:
        if cli.returncode is None:
            cli.kill()
        text = "".join(output)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
        stored = [item.event async for item in stub.WatchJob(pb.WatchJobRequest(job_id=job.id))
                  if item.WhichOneof("item") == "event"]
    trainer.signal(signal.SIGTERM)
    trainer.wait(30)

    assert final.status == pb.JOB_STATUS_COMPLETED and final.current_step == TOTAL
    assert rc == 0, text[-3000:]
    assert text.rstrip().endswith(f"{job.id}: completed")
    # The crash is in the log (the job resumed), and the CLI printed it: it reconnected to the new trainer.
    resumed = [e.message for e in stored
               if e.type == pb.EVENT_TYPE_WARNING and "; resuming from checkpoint-" in e.message]
    assert len(resumed) == 1 and f"(step {TOTAL} of {TOTAL})" not in resumed[0]  # mid-job
    # Everything the CLI prints, exactly once and in order: nothing missed across the drop, nothing repeated.
    assert printed_lines(text) == expected_lines(stored)
    assert printed_lines(text)[-1] == "status: completed"
