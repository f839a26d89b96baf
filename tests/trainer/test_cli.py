"""``python -m services.trainer watch`` as a user runs it: a real process against a real trainer."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from aragora.training.v1 import trainer_pb2 as pb
from tests.trainer.conftest import create_request


async def _watch(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.trainer", "watch", *args,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


async def test_watch_exit_status_follows_the_job(trainer_stub):
    stub, running = trainer_stub
    job = (await stub.CreateJob(create_request("cli"))).job
    await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    rc, out = await _watch(job.id, "--address", running.address)
    assert rc == 1 and f"{job.id}: cancelled" in out and "status: cancelled" in out

    rc, out = await _watch("job-nope", "--address", running.address)
    assert rc == 2 and "not found" in out
