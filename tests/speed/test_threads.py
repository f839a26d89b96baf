"""The worker's OpenMP setting: idle threads wait passively when other processes are running (spinning
otherwise), unless the environment chose a policy.

Run in fresh interpreters, because libgomp reads ``OMP_WAIT_POLICY`` once, when torch is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import os, sys
from services.trainer.worker import modeling
if {others} is not None:
    modeling.other_running = lambda: {others}
n = modeling.configure_threads({threads})
import torch
print(os.environ.get("OMP_WAIT_POLICY"), n, torch.get_num_threads(), torch.get_num_interop_threads())
"""


def _probe(threads, others=None, **env) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(threads=threads, others=others)], capture_output=True,
                         text=True,
                         cwd=REPO, env={**base, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_worker_threads_wait_passively_on_a_busy_machine_and_use_the_cpus_it_may_use():
    policy, n, threads, interop = _probe(None, others=2.0)
    assert policy == "PASSIVE"
    assert int(n) == int(threads) == len(os.sched_getaffinity(0))
    assert interop == "1"


def test_worker_threads_spin_on_a_quiet_machine():
    policy, n, threads, _ = _probe(None, others=0.0)
    assert policy == "None"  # libgomp's default: spin a while, then sleep


def test_other_running_sees_busy_processes():
    from services.trainer.worker.modeling import other_running

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time

        time.sleep(0.5)
        assert other_running() >= 1.0
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_an_explicit_policy_and_thread_count_win():
    policy, n, threads, _ = _probe(1, OMP_WAIT_POLICY="ACTIVE")
    assert policy == "ACTIVE" and n == threads == "1"
