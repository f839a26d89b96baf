"""The training worker: ``python -m services.trainer.worker JOB_DIR`` trains one job's LoRA adapter.

The trainer service spawns one worker process per running job (the contract: ``services.trainer.protocol``). The worker reads
``JOB_DIR/job.json``, gets its data (the exporter over gRPC, or a JSONL ``dataset_path``), trains with a lean
torch + peft loop, and reports on its original stdout as JSON lines (events). Layout:

- ``__main__``   entry: stdout -> event stream, signals, exit codes
- ``job``        job.json -> ``JobConfig``; ``WorkerError`` (an expected failure with a user-facing message)
- ``events``     the JSON-lines event writer
- ``signals``    SIGTERM/SIGINT watcher thread: checkpoint, then exit 143, even mid-step
- ``data``       records from the exporter / dataset_path, validated, written to ``data/train.jsonl``
- ``sft``        chat-template encoding with response-only labels, the SFT objective and its loss
- ``batching``   length-grouped, seeded batch order (little padding, exact resume)
- ``modeling``   device/dtype choice, base model loading (bitsandbytes 4/8-bit or full), LoRA
- ``checkpoint`` checkpoints (adapter + optimizer + scheduler + RNG + state) and the final adapter
- ``loop``       the optimizer loop: steps, schedule, events, checkpoints, resume
- ``runner``     the job from start to result
"""
