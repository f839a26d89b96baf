"""The optimizer loop: a lean torch loop over length-grouped batches (no Trainer abstraction in the way).

Per optimizer step: ``gradient_accumulation_steps`` batches of ``batch_size`` examples (one by default), each
the training method's loss and backward (batches weighted by ``method.loss_weight`` so k batches of b give the
gradient of one batch of k·b), gradient clipping at ``max_grad_norm`` (1.0 by default; 0: none, the norm is
still reported), AdamW on the LoRA parameters with ``weight_decay`` (0 by default), the learning rate of
``lr_schedule`` (by default linear decay to 0 over the run without warmup, the transformers default), then a
``step`` event (its ``extra`` carries ``grad_norm``, the norm before clipping).

With a validation set (``validation``), the validation loss is measured every ``eval_every_steps`` steps, at
each epoch end and at the last step (an ``eval`` event of phase ``validation``), a checkpoint is written at
each validation (so the best one is on disk), and early stopping may end the run (``validation.py``).
Checkpoints are also written every ``checkpoint_every_steps`` steps, at each epoch end and at the last step;
with ``save_total_limit`` only the newest that many are kept, plus the best by validation loss. Everything a
checkpoint holds changes only under ``guard.lock`` so the stop watcher can write a consistent checkpoint of the
last finished step at any moment.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from services.trainer.artifacts import complete_checkpoints
from services.trainer.worker import checkpoint as ckpt
from services.trainer.worker.batching import Schedule, step_groups
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError
from services.trainer.worker.signals import StopGuard
from services.trainer.worker.validation import EarlyStopping

MAX_GRAD_NORM = 1.0
"""The default of ``training_config.max_grad_norm``."""
SCHEDULERS = ("linear", "cosine", "constant")


def warmup_steps(spec, total_steps: int) -> int:
    """Warmup in optimizer steps: ``warmup_steps`` when > 0, else ``ceil(warmup_ratio · total_steps)``."""
    if spec.warmup_steps:
        return min(spec.warmup_steps, total_steps)
    return min(total_steps, math.ceil(spec.warmup_ratio * total_steps))


def lr_schedule(kind: str, warmup: int, total_steps: int):
    """LR factor after ``s`` scheduler steps, as transformers' ``get_{linear,cosine,constant}_schedule_with_warmup``:
    ``s / warmup`` during warmup, then linear decay to 0 at ``total_steps``, half a cosine to 0, or 1."""
    if kind not in SCHEDULERS:
        raise WorkerError(f"training_config.lr_scheduler_type {kind!r}: not one of {', '.join(SCHEDULERS)}")

    def factor(s: int) -> float:
        if s < warmup:
            return s / warmup
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return max(0.0, (total_steps - s) / max(1, total_steps - warmup))
        progress = (s - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return factor


class TrainLoop:
    def __init__(self, job: JobConfig, model, method, schedule: Schedule, events: EventSink,
                 guard: StopGuard, validation=None, group=None) -> None:
        """``method``: a ``methods.TrainingMethod`` (its ``lengths`` and ``step``) for ``schedule``;
        ``validation``: a ``validation.Validation`` or None (no validation during training); ``group``: this
        rank's ``distributed.Group`` in a data-parallel job (None: one process)."""
        import torch

        self.job, self.model, self.method, self.events, self.guard = job, model, method, events, guard
        self.group = group
        spec = job.spec
        if schedule.n_examples != len(method):
            raise ValueError(f"schedule for {schedule.n_examples} examples, method has {len(method)}")
        self.causal_lm = model.get_base_model()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=spec.learning_rate, weight_decay=spec.weight_decay)
        self.max_grad_norm = spec.max_grad_norm if spec.max_grad_norm > 0 else math.inf
        self.batch_size = schedule.batch_size
        self.accumulation = schedule.accumulation
        self.epochs = schedule.num_epochs
        self.seed = schedule.seed
        self.steps_per_epoch = schedule.steps_per_epoch
        self.total_steps = schedule.total_steps
        self.warmup_steps = warmup_steps(spec, self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(spec.lr_scheduler_type, self.warmup_steps, self.total_steps))
        self.every = job.checkpoint_every_steps
        self.validation = validation
        self.eval_every = spec.eval_every_steps if validation is not None else None
        self.keep_last = spec.save_total_limit
        self.state = {
            "step": 0, "epoch": 0.0, "examples_seen": 0, "tokens_seen": 0, "trained_tokens": 0,
            "train_seconds": 0.0, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "n_examples": len(method), "batch_size": schedule.batch_size, "seed": schedule.seed, "losses": [],
            "last_checkpoint_step": 0, "warmup_steps": self.warmup_steps,
            "validation": EarlyStopping.empty() if validation is not None else None,
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
        validation = self.state["validation"]
        self.state.update(state)
        if self.state.get("validation") is None:
            self.state["validation"] = validation
        self.state["last_checkpoint_step"] = state["step"]
        self._rng = rng
        ckpt.restore_rng(rng)

    def checkpoint(self, reason: str = "") -> None:
        """Writes a checkpoint of the last finished step (if newer than the last one) and reports it."""
        if self.group is not None and not self.group.is_main:
            return  # rank 0 writes the checkpoints (every rank holds the same state)
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
            self._prune()

    def best_step(self) -> int | None:
        """The step of the best validation loss so far (None without validation)."""
        val = self.state.get("validation")
        return val.get("best_step") if val else None

    def _prune(self) -> None:
        """Keeps the newest ``save_total_limit`` checkpoints and the best by validation loss."""
        if not self.keep_last:
            return
        found = complete_checkpoints(self.job.checkpoints_dir)
        keep = {step for step, _ in found[-self.keep_last:]} | {self.best_step()}
        removed = []
        for step, folder in found:
            if step not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(step)
        if removed:
            best = self.best_step()
            self.events.log(f"removed checkpoint(s) at step {', '.join(map(str, removed))} (keeping the newest "
                            f"{self.keep_last}{f' and the best, step {best}' if best is not None else ''})")

    def _checkpoint_on_stop(self) -> None:
        self.checkpoint(" (stopping)")

    # -- training -----------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Trains until ``total_steps`` (from the current step after a resume) or early stopping; returns the
        state."""
        self.model.train()
        self.guard.set_on_stop(self._checkpoint_on_stop)
        if self.group is not None:
            self.group.broadcast_params(self.params)  # every rank starts from rank 0's weights
        start_epoch, skip = divmod(self.state["step"], self.steps_per_epoch)
        val = self.state.get("validation")
        if val and val.get("stopped"):
            return self.state  # resumed after early stopping: nothing more to train
        for epoch in range(start_epoch, self.epochs):
            if self.state["step"] >= self.total_steps:
                break
            groups = step_groups(self.method.lengths, self.batch_size, self.seed, epoch, self.accumulation)
            for g, group in enumerate(groups):
                if epoch == start_epoch and g < skip:
                    continue  # consumed before the checkpoint this run resumed from
                self._step(epoch, group)
                step = self.state["step"]
                done = step >= self.total_steps
                epoch_end = g == len(groups) - 1
                validate = self.validation is not None and (
                    done or epoch_end or bool(self.eval_every and step % self.eval_every == 0))
                if validate and self._validate():
                    self.checkpoint(" (early stopping)")
                    self.events.log(self.state["validation"]["stopped"])
                    return self.state
                if done or epoch_end:
                    self.checkpoint(" (end of training)" if done else f" (end of epoch {epoch + 1})")
                elif validate or (self.every and step % self.every == 0):
                    self.checkpoint()  # at each validation too: the best must be on disk
                if done:
                    break
        return self.state

    def _validate(self) -> bool:
        """Measures the validation loss, reports it; True when early stopping ends the run now."""
        spec, st = self.job.spec, self.state
        t0 = time.perf_counter()
        loss = self.validation.loss(self.model, self.group)
        if not math.isfinite(loss):
            raise WorkerError(f"training diverged: the validation loss is {loss} at step {st['step']}; "
                              "lower training_config.learning_rate")
        with self.guard.lock:
            stopping = EarlyStopping(spec.early_stopping_patience, spec.early_stopping_min_delta, st["validation"])
            stop = stopping.update(st["step"], st["epoch"], loss)
        val = st["validation"]
        best, best_step = val["best_loss"], val["best_step"]
        self.events.emit(
            "eval", f"validation loss {loss:.4f} at step {st['step']}/{self.total_steps} on {len(self.validation)} "
                    f"examples (best {best:.4f} at step {best_step}; {time.perf_counter() - t0:.1f} s)",
            phase="validation", done=st["step"], total=self.total_steps,
            metrics={"validation_loss": loss, "step": st["step"], "epoch": round(st["epoch"], 4),
                     "best_validation_loss": best, "best_step": best_step,
                     "bad_validations": val["bad_validations"]})
        return stop

    def _step(self, epoch: int, group: list[list[int]]) -> None:
        import torch

        t0 = time.perf_counter()
        outs, losses, weights = [], [], []
        dist = self.group
        for indices in group:
            if dist is not None and not (indices := dist.shard(indices)):
                continue  # a batch smaller than the ranks: nothing of it on this rank
            out = self.method.step(self.causal_lm, indices)
            loss = float(out.loss.detach())
            if not math.isfinite(loss):
                raise WorkerError(f"training diverged: the loss is {loss} at step {self.state['step'] + 1}; "
                                  "lower training_config.learning_rate")
            if len(group) == 1 and dist is None:
                out.loss.backward()
            else:
                # Summed gradients of weight-scaled losses, divided by the total weight below: the gradient
                # of one batch of them all.
                w = float(self.method.loss_weight(out))
                (out.loss * w).backward()
                weights.append(w)
            outs.append(out)
            losses.append(loss)
        if dist is not None:
            # Every rank's weighted gradients summed and divided by the total weight: one batch of them all.
            loss, merged = dist.reduce_step(self.params, outs, losses, weights)
            outs, extra = [merged], dict(merged.extra)
        elif len(group) == 1:
            loss, extra = losses[0], dict(outs[0].extra)
        else:
            total_w = sum(weights) or 1.0
            for p in self.params:
                if p.grad is not None:
                    p.grad.div_(total_w)
            loss = sum(lo * w for lo, w in zip(losses, weights)) / total_w
            n = sum(o.examples for o in outs) or 1
            keys = set().union(*(o.extra for o in outs))
            extra = {k: sum(o.extra.get(k, 0.0) * o.examples for o in outs) / n for k in keys}
        with self.guard.lock:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            st = self.state
            st["step"] += 1
            st["epoch"] = st["step"] / self.steps_per_epoch
            st["examples_seen"] += sum(o.examples for o in outs)
            tokens = sum(o.tokens for o in outs)
            st["tokens_seen"] += tokens
            st["trained_tokens"] += sum(o.trained_tokens for o in outs)
            record = {"step": st["step"], "loss": loss, "learning_rate": lr, "epoch": round(st["epoch"], 4),
                      "tokens": tokens, "grad_norm": grad_norm}
            st["losses"].append(record)
            self._rng = ckpt.capture_rng()
        dt = time.perf_counter() - t0
        record["seconds"] = round(dt, 4)
        st["train_seconds"] += dt
        tps = tokens / dt if dt > 0 else 0.0
        step, total = st["step"], self.total_steps
        extra["grad_norm"] = grad_norm
        self.events.emit(
            "step", f"epoch {epoch + 1}/{self.epochs} step {step}/{total} loss {loss:.4f} lr {lr:.2e} "
                    f"grad norm {grad_norm:.3f} {tps:.0f} tok/s",
            epoch=round(st["epoch"], 4), step=step, total_steps=total, loss=loss, learning_rate=lr,
            examples_seen=st["examples_seen"], tokens_per_second=round(tps, 2),
            progress=round(step / total, 6), extra=extra)
