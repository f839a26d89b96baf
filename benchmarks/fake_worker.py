"""A simulated training worker for ``benchmarks/capacity_bench.py``: no model, no data, only the worker's side of
the protocol (``services.trainer.protocol``), written through the real worker's ``EventSink`` on stdout, at a
set rate. The trainer runs it instead of ``services.trainer.worker`` when its environment has
``ARAGORA_WORKER_MODULE=benchmarks.fake_worker`` (the test hook ``protocol.WORKER_MODULE_ENV``):

    python -m benchmarks.fake_worker JOB_DIR

What it sends is what a real job sends: ``status`` preparing, a few ``log`` lines, ``data``, ``status``
training, then one ``step`` line per optimizer step (the same fields and message shape as ``worker/loop.py``)
and a ``checkpoint`` line every ``checkpoint_every_steps`` steps (from ``job.json``, the trainer's setting by
default), until ``FAKE_WORKER_MAX_SECONDS`` (then an ``error``) or SIGTERM (a cancel).

The step rate (steps per second) is read every second from the file ``FAKE_WORKER_RATE_FILE`` (so a
benchmark can change it for every running job at once), else ``FAKE_WORKER_STEPS_PER_SECOND`` (default 3, a
135M model's step on one H100: 0.30 s, docs/performance.md). Each step's ``extra`` carries ``emitted_at``
(Unix time when the line was written), so a watcher can measure delivery latency.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path


def _rate(default: float) -> float:
    path = os.environ.get("FAKE_WORKER_RATE_FILE")
    if path:
        try:
            return max(0.01, float(Path(path).read_text().strip()))
        except (OSError, ValueError):
            pass
    return default


def main(argv: list[str]) -> int:
    from services.trainer.worker.events import EventSink

    events = EventSink.from_stdout()
    if len(argv) != 1:
        events.error("usage: python -m benchmarks.fake_worker JOB_DIR")
        return 2
    job = json.loads((Path(argv[0]) / "job.json").read_text())
    spec = job.get("training_config") or {}
    every = int(spec.get("checkpoint_every_steps") or job.get("checkpoint_every_steps") or 50)
    default_rate = float(os.environ.get("FAKE_WORKER_STEPS_PER_SECOND", "3"))
    max_seconds = float(os.environ.get("FAKE_WORKER_MAX_SECONDS", "1800"))
    total, epochs, batch = 1_000_000, int(spec.get("num_epochs") or 3), int(spec.get("batch_size") or 4)
    rng = random.Random(job.get("job_id"))

    events.status("preparing", f"preparing job {job.get('job_id')}: base model {job.get('base_model')}, "
                               "fetching training data (simulated)")
    events.log("800 SFT records from the exporter (simulated)")
    events.emit("data", f"training data ready: 800 examples from 400 debates, {total} steps (simulated)",
                training_examples=800, training_debates=400, total_steps=total)
    events.log("model ready (simulated)")
    events.status("training", f"training {total} steps on 800 examples (simulated)")
    parent = os.getppid()  # the trainer: when it is gone (killed), so is this job
    start = time.monotonic()
    next_at = start + rng.random() / _rate(default_rate)  # jobs out of phase, as real ones are
    rate, rate_checked = _rate(default_rate), start
    loss = 2.5
    for step in range(1, total + 1):
        while True:  # until this step is due, re-reading the rate every second (a new rate acts at once)
            now = time.monotonic()
            if os.getppid() != parent:
                return 1
            if now - start > max_seconds:
                events.error(f"fake worker: stopped after FAKE_WORKER_MAX_SECONDS {max_seconds:g}")
                return 1
            if now - rate_checked >= 1.0:
                new = _rate(default_rate)
                if new != rate:
                    next_at = min(next_at, now + rng.random() / new)
                rate, rate_checked = new, now
            if next_at <= now:
                break
            time.sleep(min(1.0, next_at - now))
        next_at = max(next_at + 1.0 / rate, time.monotonic() - 1.0)  # no burst after a stall
        loss = max(0.05, loss * 0.999 + rng.uniform(-0.02, 0.02))
        lr, grad_norm, epoch = 2e-4 * (1 - step / total), rng.uniform(0.2, 1.5), step / (total / epochs)
        events.emit(
            "step", f"epoch {int(epoch) + 1}/{epochs} step {step}/{total} loss {loss:.4f} lr {lr:.2e} "
                    f"grad norm {grad_norm:.3f} {rng.uniform(200, 3000):.0f} tok/s",
            epoch=round(epoch, 4), step=step, total_steps=total, loss=loss, learning_rate=lr,
            examples_seen=step * batch, tokens_per_second=round(rng.uniform(200, 3000), 2),
            progress=round(step / total, 6), extra={"grad_norm": grad_norm, "emitted_at": time.time()})
        if step % every == 0:
            rel = f"checkpoints/checkpoint-{step}"
            events.emit("checkpoint", f"checkpoint at step {step}: {rel}", path=rel, step=step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
