"""``python -m services.trainer`` runs the trainer's gRPC server."""

from __future__ import annotations

import argparse
import asyncio

from services.common.logs import setup_logging
from services.trainer.config import TrainerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (the default)")
    args = parser.parse_args(argv)
    settings = TrainerSettings()
    setup_logging("trainer", settings.log_level)
    if args.command in (None, "serve"):
        from services.trainer.server import serve

        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
