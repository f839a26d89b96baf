"""``python -m services.exporter`` runs the exporter's gRPC server."""

from __future__ import annotations

import argparse
import asyncio

from services.common.logs import setup_logging
from services.exporter.config import ExporterSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.exporter", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (the default)")
    args = parser.parse_args(argv)
    settings = ExporterSettings()
    setup_logging("exporter", settings.log_level)
    if args.command in (None, "serve"):
        from services.exporter.server import serve

        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
