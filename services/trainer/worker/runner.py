"""One job from start to result, stage by stage: data, encoding, model, training, adapter, evaluation, metrics.

The training method (``methods.get(training_config.method)``) supplies what differs between methods: the kind
of record, the encoding, the loss per batch, its preparation and figures. Everything else is the same for all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from services.trainer.artifacts import JobLayout
from services.trainer.worker import distributed, methods, sources
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError
from services.trainer.worker.signals import StopGuard
from services.trainer.worker.validation import split_validation

METRICS_FILE = JobLayout.METRICS_FILE


def run_job(job_dir: Path, events: EventSink, guard: StopGuard, group=None) -> int:
    """Runs the job in ``job_dir``. With ``training_config.num_workers`` > 1 this process is rank 0 of a
    data-parallel group (``distributed.py``; it starts the other ranks) unless ``group`` says which rank it is."""
    job = JobConfig.load(job_dir)
    if group is None:
        group = distributed.setup(job, events)
    if group is None:
        return _run(job, events, guard, None)
    try:
        code = _run(job, events if group.is_main else distributed.SilentSink(), guard, group)
    except BaseException:
        group.close(abort=True)  # the other ranks wait in a collective that will never come: end them now
        raise
    group.close()
    return code


def _cpu_paths(loaded) -> str:
    """The model-ready log's note on how a CPU job computes (empty on a GPU)."""
    notes = []
    cpu = loaded.cpu_linear
    if cpu:
        notes.append(f"frozen linear layers by oneDNN ({cpu['layers']})" if cpu["backend"] == "onednn"
                     else f"frozen linear layers by torch's BLAS ({cpu['reason']})")
    lora = loaded.lora_path
    if lora:
        notes.append(f"LoRA layers fused ({lora['layers']})" if lora["path"] == "fused"
                     else f"LoRA layers by peft ({lora['reason']})")
    if loaded.grouped_attention:
        notes.append("grouped-query attention by torch's kernel (enable_gqa)")
    return "".join("; " + n for n in notes)


def _run(job: JobConfig, events: EventSink, guard: StopGuard, group) -> int:
    started = time.monotonic()
    spec = job.spec
    main = group is None or group.is_main
    events.status("preparing", f"preparing job {job.job_id}: base model {job.base_model}, "
                               f"{'resuming' if job.resume else 'fetching training data'}")
    method_cls = methods.get(spec.method)

    # Data first: it needs no ML library, so bad data or a dead exporter fails the job within seconds.
    # (Data-parallel: rank 0 fetches it and sends it to the other ranks.)
    records, source = sources.load_training_records(job, events, method_cls.records) if main else (None, "")
    if group is not None:
        records = group.broadcast_object(records)
    events.log(f"{len(records)} {method_cls.records.many} from {source}")
    # The held-out split for the evaluation after training, fetched now so a data problem shows early.
    from services.trainer.worker.evaluate import EvalSettings

    eval_settings = EvalSettings()
    heldout = sources.load_heldout(job, events, eval_settings) if main else None

    from services.trainer.worker import modeling
    from services.trainer.worker.batching import Schedule, batch_order, padding_ratio
    from services.trainer.worker.checkpoint import (
        latest_checkpoint,
        load_adapter_weights,
        load_initial_weights,
        save_final_adapter,
    )
    from services.trainer.worker.loop import TrainLoop
    from services.trainer.worker.validation import Validation

    threads = group.threads if group is not None else modeling.configure_threads(job.num_threads)
    tokenizer = modeling.load_tokenizer(job.model_path)
    encoded, stats = method_cls.encode(tokenizer, records, spec.max_seq_length)
    if stats.template == "fallback":
        events.warning(f"{job.base_model} has no chat template; using an '### Instruction / ### Response' prompt")
    if stats.dropped:
        events.warning(f"{len(stats.dropped)} records dropped: their prompt alone fills max_seq_length "
                       f"{spec.max_seq_length} (records {', '.join(str(i + 1) for i in stats.dropped[:5])}"
                       f"{', ...' if len(stats.dropped) > 5 else ''})")
    dropped = set(stats.dropped)
    kept = [r for i, r in enumerate(records) if i not in dropped]
    if not kept:
        raise WorkerError(f"no training data left: every record's prompt fills max_seq_length "
                          f"{spec.max_seq_length}; raise training_config.max_seq_length")
    if stats.truncated:
        events.log(f"{stats.truncated} records longer than max_seq_length {spec.max_seq_length} were truncated")
    if main:
        sources.write_jsonl(job.data_dir / sources.TRAIN_FILE, kept)  # all of them: a resume splits them again
    # The validation set: a split of the training debates (validation.py says why not the held-out split).
    # ``encoded`` has one example per kept record, in order.
    val_encoded: list = []
    if spec.validation_split > 0:
        train_idx, val_idx = split_validation(kept, spec.validation_split, spec.seed)
        if not train_idx or not val_idx:
            raise WorkerError(f"training_config.validation_split {spec.validation_split:g}: {len(kept)} records "
                              "cannot be split into training and validation debates; add data or set "
                              "validation_split to 0")
        val_records = [kept[i] for i in val_idx]
        if main:
            sources.write_jsonl(job.layout.validation_file, val_records)
        val_encoded = [encoded[i] for i in val_idx]
        kept, encoded = [kept[i] for i in train_idx], [encoded[i] for i in train_idx]
        events.log(f"validation set: {len(val_idx)} {method_cls.records.many} of "
                   f"{sources.count_debates(val_records)} debates "
                   f"({spec.validation_split:g} of the debates, data/{JobLayout.VALIDATION_FILE}); "
                   f"{len(kept)} left to train on")

    schedule = Schedule.for_spec(len(kept), spec)
    spe, total_steps = schedule.steps_per_epoch, schedule.total_steps
    debates = sources.count_debates(kept)
    lengths = [method_cls.example_length(e) for e in encoded]
    pad = padding_ratio(lengths, batch_order(lengths, spec.batch_size, spec.seed, 0))
    events.emit("data", f"training data ready: {len(kept)} examples from {debates} debates, {total_steps} steps "
                        f"({spec.num_epochs} epochs x {spe} batches of {spec.batch_size}); "
                        f"{sum(lengths)} tokens per epoch, {pad:.0%} padding",
                training_examples=len(kept), training_debates=debates, total_steps=total_steps)

    events.log(f"loading {job.base_model} ({spec.quantization} quantization requested)")
    loaded = method_cls.load_model(job.model_path, spec, tokenizer, events)
    layers = "".join(f" ({n} bitsandbytes {name} layers)" for name, n in loaded.quantized_layers.items())
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" and str(loaded.device) == "cpu"
    sleeping = " (idle OpenMP threads wait passively: a busy machine, or OMP_WAIT_POLICY)" if passive else ""
    events.log(f"model ready: {loaded.quantization} weights{layers}, compute "
               f"{str(loaded.dtype).removeprefix('torch.')} on {loaded.device}, {threads} threads{sleeping}"
               f"{_cpu_paths(loaded)}; "
               f"LoRA r={spec.lora_r} alpha={spec.lora_alpha:g} on "
               f"{', '.join(spec.target_modules)}: {loaded.trainable_parameters:,} trainable of "
               f"{loaded.total_parameters:,} parameters; gradient checkpointing "
               f"{'on' if spec.gradient_checkpointing else 'off'}")
    if group is not None:
        events.log(f"data-parallel: {group.describe()}; each takes its share of every batch of {spec.batch_size}")

    if job.init_weights is not None:  # (a resumed job then continues from its own checkpoint)
        n = load_initial_weights(job.init_weights, loaded.model)
        events.log(f"warm start: {n} LoRA weight tensors loaded from {spec.init_from_job}"
                   f"/{job.init_weights.name} instead of a fresh adapter")
    method = method_cls.create(encoded, tokenizer.pad_token_id, loaded.device, spec)
    method.prepare(loaded.model, events, schedule)
    validation = None
    if val_encoded:
        val_method = method_cls.create(val_encoded, tokenizer.pad_token_id, loaded.device, spec)
        val_method.prepare(loaded.model, events, Schedule(len(val_encoded), spec.batch_size, 1, spec.seed))
        validation = Validation(val_method, spec.batch_size)
    loop = TrainLoop(job, loaded.model, method, schedule, events, guard, validation, group)
    if job.resume:
        folder = latest_checkpoint(job.checkpoints_dir)
        if folder is None:
            events.log("no checkpoint to resume from: training from step 0")
        else:
            loop.resume(folder)
            events.log(f"resumed from {folder.name}: step {loop.state['step']} of {total_steps}")
    events.status("training", f"training {total_steps} steps on {len(kept)} examples "
                              f"(batch {spec.batch_size}, lr {spec.learning_rate:g}, {loaded.device})")
    state = loop.run()
    if not main:
        return 0  # rank 0 writes the adapter and metrics and evaluates

    with guard.lock:
        guard.set_on_stop(None)  # the last checkpoint is the last step; nothing more to save on a stop
        validated = _best_adapter(job, loop, loaded.model, events, load_adapter_weights)
        save_final_adapter(job.adapter_dir, loaded.model, tokenizer, job.base_model)
    # Base vs adapter on the held-out split, before the result (a stop now resumes to a re-evaluation).
    evaluation = method.evaluate(job, loaded.model, tokenizer, heldout, events,
                                 eval_settings.for_training(state["tokens_seen"], spec.gradient_checkpointing))
    losses = state["losses"]
    final_loss = losses[-1]["loss"] if losses else None
    last_epoch = [x["loss"] for x in losses if x["step"] > state["step"] - spe]
    metrics = {
        "job_id": job.job_id,
        "base_model": job.base_model,
        "method": spec.method,
        "final_loss": final_loss,
        "mean_loss_last_epoch": sum(last_epoch) / len(last_epoch) if last_epoch else None,
        "first_loss": losses[0]["loss"] if losses else None,
        "training_examples": len(kept),
        "training_debates": debates,
        "dropped_examples": len(stats.dropped),
        "truncated_examples": stats.truncated,
        "steps": state["step"],
        "total_steps": total_steps,
        "epochs": state["epoch"],
        "examples_seen": state["examples_seen"],
        "tokens_seen": state["tokens_seen"],
        "trained_tokens": state["trained_tokens"],
        "train_seconds": round(state["train_seconds"], 3),
        "tokens_per_second": (round(state["tokens_seen"] / state["train_seconds"], 2)
                              if state["train_seconds"] else None),
        "wall_seconds": round(time.monotonic() - started, 3),
        "quantization": loaded.quantization,
        "quantized_layers": loaded.quantized_layers,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "threads": threads,
        "cpu_linear": loaded.cpu_linear.get("backend"),
        "lora_path": loaded.lora_path.get("path"),
        "grouped_attention": loaded.grouped_attention,
        "trainable_parameters": loaded.trainable_parameters,
        "total_parameters": loaded.total_parameters,
        "training_config": spec.model_dump(mode="json"),
        "losses": losses,
        "warmup_steps": state.get("warmup_steps", 0),
        "validation": validated,
    }
    metrics.update(method.metrics())
    metrics.update(evaluation)
    tmp = JobLayout.temporary(job.layout.metrics_file)
    tmp.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    os.replace(tmp, job.layout.metrics_file)
    stopped = f" ({validated['stopped']})" if validated and validated["stopped"] else ""
    events.emit("result", f"training finished: {state['step']} steps, final loss {final_loss:.4f}{stopped}"
                if final_loss is not None else "training finished", final_loss=final_loss,
                metrics_path=METRICS_FILE)
    return 0


def _best_adapter(job: JobConfig, loop, model, events: EventSink, load_adapter_weights) -> dict | None:
    """With validation: puts the best checkpoint's weights (lowest validation loss) into ``model`` so the
    adapter written is that one; returns the ``validation`` figures of metrics.json (None without)."""
    val = loop.state.get("validation")
    if not val or val.get("best_step") is None:
        return None
    step, best_step = loop.state["step"], val["best_step"]
    last = val["history"][-1] if val["history"] else None
    out = {"split": job.spec.validation_split, "examples": len(loop.validation) if loop.validation else None,
           "eval_every_steps": job.spec.eval_every_steps, "history": val["history"],
           "best_step": best_step, "best_loss": val["best_loss"], "last_step": step,
           "last_loss": last["loss"] if last and last["step"] == step else None,
           "early_stopped": bool(val.get("stopped")), "stopped": val.get("stopped"),
           "adapter_checkpoint": JobLayout.checkpoint_name(best_step)}
    if best_step == step:
        out["adapter_reason"] = f"the last step {step} has the lowest validation loss ({val['best_loss']:.4f})"
    else:
        load_adapter_weights(job.layout.checkpoint_dir(best_step), model)
        out["adapter_reason"] = (f"step {best_step} has the lowest validation loss ({val['best_loss']:.4f}); "
                                 f"training ended at step {step}")
    events.log(f"adapter: {out['adapter_checkpoint']}, because {out['adapter_reason']}")
    return out
