"""``python -m services.exporter``: runs the exporter's gRPC server (``serve``, the default) or imports a JSONL
file of debates (``import FILE.jsonl``)."""

from __future__ import annotations

import argparse
import asyncio

from services.common.logs import setup_logging
from services.exporter.config import ExporterSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.exporter", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (the default)")
    imp = sub.add_parser("import", help="import debates and gauntlet runs from a JSONL file (- for stdin)")
    imp.add_argument("file", help="the JSONL file, one import record per line")
    imp.add_argument("--address", help="stream to a running exporter at HOST:PORT instead of writing the "
                     "database at EXPORTER_DATABASE_URL directly")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    settings = ExporterSettings()
    if args.command == "import":
        setup_logging("exporter", "WARNING")
        from services.exporter.cli import run_import

        return run_import(args.file, args.address, args.json, settings)
    setup_logging("exporter", settings.log_level)
    from services.exporter.server import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
