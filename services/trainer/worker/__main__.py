"""``python -m services.trainer.worker JOB_DIR``: train one job (the contract: ``services.trainer.protocol``).
``python -m services.trainer.worker --preflight DIR``: a dry run of the job in DIR (``worker/preflight.py``):
its data, tokens, steps, measured throughput and memory in ``DIR/preflight.json``, no training.

Exit codes: 0 after a ``result`` event; 1 after an ``error`` event; 143 when stopped by SIGTERM/SIGINT (after
writing a checkpoint of the last finished step); 2 for a wrong command line.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from services.trainer.protocol import GPU_OOM_MESSAGE, OOM_MESSAGE, WORKER_MAX_FILE_ENV
from services.trainer.worker.signals import StopGuard


def main(argv: list[str] | None = None) -> int:
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        print(f"usage: python -m services.trainer.worker [--preflight] JOB_DIR\n\n{__doc__.strip()}")
        return 0
    # First of all, before any library starts a thread: block the stop signals and start their watcher.
    guard = StopGuard()
    guard.install()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    max_file = os.environ.get(WORKER_MAX_FILE_ENV, "")
    if max_file.isdigit() and int(max_file) > 0:
        import resource

        # The service's worker_max_file_bytes. Python ignores SIGXFSZ, so a write past the limit fails with
        # EFBIG and the job fails with that reason instead of filling the disk.
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(max_file), int(max_file)))

    from services.trainer.worker.events import EventSink
    from services.trainer.worker.job import WorkerError

    events = EventSink.from_stdout()
    argv = sys.argv[1:] if argv is None else argv
    preflight = argv[:1] == ["--preflight"]
    if preflight:
        argv = argv[1:]
    if len(argv) != 1:
        events.error("usage: python -m services.trainer.worker [--preflight] JOB_DIR")
        return 2
    try:
        if preflight:
            from services.trainer.worker.preflight import run_preflight

            return run_preflight(Path(argv[0]), events)
        from services.trainer.worker.fetch import fetch_base_model
        from services.trainer.worker.runner import run_job
        from services.trainer.worker.tracking import tracked

        fetch_base_model(argv[0], events)  # a base model from the model hub (job.json's hub_download)
        return run_job(argv[0], tracked(events, Path(argv[0])), guard)
    except WorkerError as exc:
        events.error(str(exc))
    except MemoryError:
        events.error(OOM_MESSAGE)
    except Exception as exc:
        traceback.print_exc()
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError / torch.OutOfMemoryError
            events.error(GPU_OOM_MESSAGE)
        elif "can't allocate memory" in str(exc):  # torch's CPU allocator: a RuntimeError, not MemoryError
            events.error(OOM_MESSAGE)
        elif isinstance(exc, OSError):  # e.g. writing data/ or metrics.json on a full disk
            from services.trainer.worker.checkpoint import write_failure

            events.error(str(write_failure(exc, Path(exc.filename).name if exc.filename else "a file",
                                           Path(argv[0]))))
        else:
            first = (str(exc).strip().splitlines() or [""])[0][:500]
            events.error(f"training failed: {type(exc).__name__}: {first}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
