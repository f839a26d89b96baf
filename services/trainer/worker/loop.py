"""The optimizer loop: a lean torch loop over length-grouped batches (no Trainer abstraction in the way).

Per optimizer step: one batch of ``batch_size`` examples, the training method's loss, backward, gradient clipping at
1.0, AdamW on the LoRA parameters, a linear learning-rate decay to 0 over the run (the transformers default
schedule), then a ``step`` event. Checkpoints every ``checkpoint_every_steps`` steps, at each epoch end and at
the last step. Everything a checkpoint holds changes only under ``guard.lock`` so the stop watcher can write a
consistent checkpoint of the last finished step at any moment.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from services.trainer.worker import checkpoint as ckpt
from services.trainer.worker.batching import Schedule, batch_order
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError
from services.trainer.worker.signals import StopGuard

MAX_GRAD_NORM = 1.0


def linear_decay(total_steps: int):
    """LR factor after ``s`` scheduler steps: 1 at the first step, decaying linearly to 0 after the last."""
    return lambda s: max(0.0, (total_steps - s) / total_steps)


class TrainLoop:
    def __init__(self, job: JobConfig, model, method, schedule: Schedule, events: EventSink,
                 guard: StopGuard) -> None:
        """``method``: a ``methods.TrainingMethod`` (its ``lengths`` and ``step``) for ``schedule``."""
        import torch

        self.job, self.model, self.method, self.events, self.guard = job, model, method, events, guard
        spec = job.spec
        if schedule.n_examples != len(method):
            raise ValueError(f"schedule for {schedule.n_examples} examples, method has {len(method)}")
        self.causal_lm = model.get_base_model()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=spec.learning_rate, weight_decay=0.0)
        self.batch_size = schedule.batch_size
        self.epochs = schedule.num_epochs
        self.seed = schedule.seed
        self.steps_per_epoch = schedule.steps_per_epoch
        self.total_steps = schedule.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_decay(self.total_steps))
        self.every = job.checkpoint_every_steps
        self.state = {
            "step": 0, "epoch": 0.0, "examples_seen": 0, "tokens_seen": 0, "trained_tokens": 0,
            "train_seconds": 0.0, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "n_examples": len(method), "batch_size": schedule.batch_size, "seed": schedule.seed, "losses": [],
            "last_checkpoint_step": 0,
        }
        self._rng = ckpt.capture_rng()

    # -- checkpoints --------------------------------------------------------------------------------------

    def resume(self, folder: Path) -> None:
        """Continues from a checkpoint: weights, optimizer, scheduler, RNG, step and counters."""
        try:
            state, rng = ckpt.load_checkpoint(folder, self.model, self.optimizer, self.scheduler)
        except Exception as exc:
            raise WorkerError(f"cannot resume from {folder.name}: {exc}") from None
        for key in ("n_examples", "batch_size", "total_steps"):
            if state.get(key) != self.state[key]:
                raise WorkerError(f"cannot resume from {folder.name}: it was written for {key} {state.get(key)}, "
                                  f"the job now has {self.state[key]}")
        self.state.update(state)
        self.state["last_checkpoint_step"] = state["step"]
        self._rng = rng
        ckpt.restore_rng(rng)

    def checkpoint(self, reason: str = "") -> None:
        """Writes a checkpoint of the last finished step (if newer than the last one) and reports it."""
        with self.guard.lock:
            step = self.state["step"]
            if step == 0 or step <= self.state["last_checkpoint_step"]:
                return
            self.state["last_checkpoint_step"] = step
            state = {k: v for k, v in self.state.items()}
            folder = ckpt.save_checkpoint(self.job.checkpoints_dir, step, self.model, self.optimizer,
                                          self.scheduler, state, self._rng, self.job.base_model)
            rel = folder.relative_to(self.job.job_dir).as_posix()
            self.events.emit("checkpoint", f"checkpoint at step {step}{reason}: {rel}", path=rel, step=step)

    def _checkpoint_on_stop(self) -> None:
        self.checkpoint(" (stopping)")

    # -- training -----------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Trains until ``total_steps`` (from the current step after a resume); returns the state."""
        self.model.train()
        self.guard.set_on_stop(self._checkpoint_on_stop)
        start_epoch, skip = divmod(self.state["step"], self.steps_per_epoch)
        for epoch in range(start_epoch, self.epochs):
            if self.state["step"] >= self.total_steps:
                break
            batches = batch_order(self.method.lengths, self.batch_size, self.seed, epoch)
            for b, indices in enumerate(batches):
                if epoch == start_epoch and b < skip:
                    continue  # consumed before the checkpoint this run resumed from
                self._step(epoch, indices)
                done = self.state["step"] >= self.total_steps
                if done or b == len(batches) - 1:
                    self.checkpoint(" (end of training)" if done else f" (end of epoch {epoch + 1})")
                elif self.every and self.state["step"] % self.every == 0:
                    self.checkpoint()
                if done:
                    break
        return self.state

    def _step(self, epoch: int, indices: list[int]) -> None:
        import torch

        t0 = time.perf_counter()
        out = self.method.step(self.causal_lm, indices)
        loss = float(out.loss.detach())
        if not math.isfinite(loss):
            raise WorkerError(f"training diverged: the loss is {loss} at step {self.state['step'] + 1}; "
                              "lower training_config.learning_rate")
        out.loss.backward()
        with self.guard.lock:
            torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            st = self.state
            st["step"] += 1
            st["epoch"] = st["step"] / self.steps_per_epoch
            st["examples_seen"] += out.examples
            st["tokens_seen"] += out.tokens
            st["trained_tokens"] += out.trained_tokens
            record = {"step": st["step"], "loss": loss, "learning_rate": lr, "epoch": round(st["epoch"], 4),
                      "tokens": out.tokens}
            st["losses"].append(record)
            self._rng = ckpt.capture_rng()
        dt = time.perf_counter() - t0
        record["seconds"] = round(dt, 4)
        st["train_seconds"] += dt
        tps = out.tokens / dt if dt > 0 else 0.0
        step, total = st["step"], self.total_steps
        self.events.emit(
            "step", f"epoch {epoch + 1}/{self.epochs} step {step}/{total} loss {loss:.4f} lr {lr:.2e} "
                    f"{tps:.0f} tok/s",
            epoch=round(st["epoch"], 4), step=step, total_steps=total, loss=loss, learning_rate=lr,
            examples_seen=st["examples_seen"], tokens_per_second=round(tps, 2),
            progress=round(step / total, 6), extra=dict(out.extra))
