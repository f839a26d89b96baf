"""``python -m services.trainer``: run the trainer's gRPC server (``serve``, the default), provision the default
base model (``provision``), watch a job live (``watch JOB_ID``), export a completed job (``export JOB_ID KIND``),
or pull, list and delete base models (``models pull|list|delete``)."""

from __future__ import annotations

import argparse
import asyncio

from services.common.logs import setup_logging
from services.trainer.config import TrainerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (the default)")
    sub.add_parser("provision", help="provision the default base model into the models folder (once)")
    w = sub.add_parser("watch", help="draw a job's progress (epoch, step, loss, ETA) until it ends")
    w.add_argument("job_id", metavar="JOB_ID")
    w.add_argument("--address", help="the trainer's gRPC address (default: TRAINER_HOST:TRAINER_PORT)")
    w.add_argument("--after", type=int, default=0, help="start after this event sequence number")
    x = sub.add_parser("export",
                       help="merge / export a completed job (merged, gguf_f16, gguf_q8_0) with a progress bar")
    x.add_argument("job_id", metavar="JOB_ID")
    x.add_argument("kind", choices=["merged", "gguf_f16", "gguf_q8_0"])
    x.add_argument("--address", help="the trainer's gRPC address (default: TRAINER_HOST:TRAINER_PORT)")
    x.add_argument("--attach", action="store_true", help="follow the running (or last) export instead of starting one")
    x.add_argument("--cancel", action="store_true", help="cancel the running export")
    m = sub.add_parser("models", help="base models: pull ID from the model hub, list, delete ID")
    m.add_argument("action", choices=("pull", "list", "delete"))
    m.add_argument("model_id", nargs="?", metavar="ID")
    m.add_argument("--address", help="the trainer's gRPC address, for delete (default: TRAINER_HOST:TRAINER_PORT)")
    args = parser.parse_args(argv)
    settings = TrainerSettings()
    if args.command == "export":
        from services.trainer.model_export.cli import main as export_main

        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        return export_main(args.job_id, args.kind, args.address or f"{host}:{settings.port}", args.attach, args.cancel)
    if args.command == "models":
        from services.trainer import models_cli

        if args.action == "list":
            return models_cli.list_models(settings)
        if not args.model_id:
            parser.error(f"models {args.action} needs a model ID")
        if args.action == "pull":
            return models_cli.pull(settings, args.model_id)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        return models_cli.delete(settings, args.model_id, args.address or f"{host}:{settings.port}")
    if args.command == "watch":
        from services.trainer.cli import main as watch_main

        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        return watch_main(args.job_id, args.address or f"{host}:{settings.port}", args.after)
    setup_logging("trainer", settings.log_level)
    if args.command == "provision":
        # Written by the worker side; imported only here so `serve` never pays for it.
        from services.trainer.provision import main as provision_main

        return provision_main(settings)
    from services.trainer.server import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
