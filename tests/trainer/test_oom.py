"""How the trainer explains a worker that died by a signal: a SIGKILL while memory was short (the cgroup counted
an OOM kill, the machine ran low, or the worker tree came near its limit) is a kernel OOM kill and gets the
same advice as an allocation failure in the worker; any other kill is reported as the signal it was.

The processes are real and really SIGKILLed, and their memory is really sampled; the forensics that cannot be
caused on a shared machine (the cgroup's OOM counter rising, the machine running low) are passed in."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil
import pytest

from services.trainer import protocol
from services.trainer.supervisor import (
    MemoryForensics,
    cgroup_oom_kills,
    classify_exit,
    memory_limit,
)

ALLOCATE_MB = 150
HOLDER = (f"import sys, time; block = bytearray({ALLOCATE_MB} << 20); block[::4096] = b'x' * len(block[::4096]); "
          "print('ready', flush=True); time.sleep(120)")


@pytest.fixture
def killed():
    """A real process holding ~150 MB, sampled as the supervisor samples a worker, then SIGKILLed: its exit
    code (as asyncio reports it) and what was seen of its memory."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        memory = MemoryForensics(oom_kills_at_start=cgroup_oom_kills())
        memory.sample(psutil.Process(proc.pid))
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(10)
    finally:
        proc.kill()
        proc.wait(10)
    memory.oom_kills_at_exit = cgroup_oom_kills()
    memory.memory_limit = memory_limit()
    return rc, memory


def test_the_sample_sees_the_worker_trees_memory(killed):
    rc, memory = killed
    assert rc == -signal.SIGKILL
    assert memory.peak_rss >= ALLOCATE_MB << 20
    assert memory.memory_limit > memory.peak_rss


def test_a_plain_sigkill_is_reported_as_the_signal(killed):
    rc, memory = killed
    # A 150 MB process far from the machine's (or cgroup's) limit; how busy the shared machine is at the
    # moment is not this test's subject.
    assert memory.peak_rss < 0.9 * memory.memory_limit
    memory.low_memory_seen = False
    memory.oom_kills_at_exit = memory.oom_kills_at_start  # no OOM kill counted meanwhile (a real one may race)
    assert classify_exit(rc, memory) == "worker killed by signal 9"


def test_a_sigkill_counted_by_the_cgroup_is_an_oom_kill(killed):
    rc, memory = killed
    memory.oom_kills_at_start, memory.oom_kills_at_exit = 4, 5  # the kernel's oom_kill counter rose
    assert classify_exit(rc, memory) == protocol.OOM_MESSAGE
    memory.oom_kills_at_start = None  # no counter at start (no cgroup v2): nothing to compare
    assert classify_exit(rc, memory) == "worker killed by signal 9"


def test_a_sigkill_while_memory_ran_low_or_near_the_limit_is_an_oom_kill(killed):
    rc, memory = killed
    memory.oom_kills_at_exit = memory.oom_kills_at_start
    memory.low_memory_seen = True  # the machine had < 5% available at a sample
    assert classify_exit(rc, memory) == protocol.OOM_MESSAGE
    memory.low_memory_seen = False
    memory.memory_limit = int(memory.peak_rss / 0.95)  # a limit the real peak came within 5% of
    assert classify_exit(rc, memory) == protocol.OOM_MESSAGE
    memory.memory_limit = int(memory.peak_rss / 0.85)
    assert classify_exit(rc, memory) == "worker killed by signal 9"


def test_only_sigkill_is_read_as_an_oom_kill():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(10)
    short = MemoryForensics(low_memory_seen=True, oom_kills_at_start=0, oom_kills_at_exit=1)
    assert classify_exit(rc, short) == "worker killed by signal 15"


def test_other_exits_keep_their_reasons():
    memory = MemoryForensics(low_memory_seen=True)
    assert classify_exit(0, memory) == "the worker exited without reporting a result"
    assert classify_exit(0, memory, last_error="boom") == "boom"
    assert classify_exit(1, memory, log_tail="Traceback: x") == "worker exited with code 1: Traceback: x"
    assert classify_exit(1, memory, last_error="bad data", log_tail="x") == "bad data"


def test_the_cgroup_oom_counter_is_read_from_memory_events(tmp_path):
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n")
    assert cgroup_oom_kills(events) == 2
    assert cgroup_oom_kills(tmp_path / "missing") is None


def test_one_oom_message_for_the_kernel_kill_and_the_allocation_failure():
    from services.trainer.worker import __main__ as worker_main

    assert worker_main.OOM_MESSAGE is protocol.OOM_MESSAGE
    assert protocol.OOM_MESSAGE == ("out of memory: reduce batch_size or max_seq_length, or enable "
                                    "gradient_checkpointing")  # as docs/faults.md quotes it
