"""The training worker: ``python -m services.trainer.worker JOB_DIR`` trains one job's LoRA adapter.

The trainer service spawns one worker process per running job (the contract: ``services.trainer.protocol``). The
worker reads ``JOB_DIR/job.json``, gets its data (the exporter over gRPC, or a JSONL ``dataset_path``), trains with
a lean torch + peft loop, and reports on its original stdout as JSON lines (events). Modules, in the order of the
data flow:

- ``__main__``   entry: stdout -> event stream, signals, exit codes
- ``job``        job.json -> ``JobConfig``; ``WorkerError`` (an expected failure with a user-facing message)
- ``events``     the JSON-lines event writer
- ``signals``    SIGTERM/SIGINT watcher thread: checkpoint, then exit 143, even mid-step
- ``sources``    fetch data: SFT records and DPO pairs from the exporter / dataset_path / data/, validated;
                 the held-out split of the evaluation
- ``encoding``   encode: chat template, prompt/response masks, truncation stats, batch tensors
- ``logprobs``   forward / log-probs: the shared-prefix forward, response-token log-probs, packed DPO pairs
- ``methods``    the objective: one training method per module (``sft``, ``dpo``), found by
                 ``training_config.method`` (``methods.base.TrainingMethod`` is the protocol)
- ``batching``   the step plan (``Schedule``) and the length-grouped, seeded batch order
- ``modeling``   device/dtype choice, base model loading (bitsandbytes 4/8-bit or full), LoRA
- ``loop``       step: the optimizer loop, schedule, events, checkpoints, resume
- ``checkpoint`` checkpoints (adapter + optimizer + scheduler + RNG + state) and the final adapter
- ``evaluate``   evaluate: base model vs adapter on the held-out split
- ``runner``     the job from start to result, stage by stage
"""
