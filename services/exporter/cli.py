"""``python -m services.exporter import FILE.jsonl``: imports debates and gauntlet runs from a JSONL file.

By default it writes into the store at ``EXPORTER_DATABASE_URL`` directly (migrating it first), so it works
without a running server; with ``--address HOST:PORT`` it streams the file to a running exporter's
ImportDebates instead (sending ``EXPORTER_API_TOKEN`` when set). Either way the records go through the same
validation (``services.exporter.importer``). Exit status: 0 when every record was stored, 1 when some were
rejected, 2 when the file or the exporter cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from services.common.tls import TlsConfigError, TlsFiles
from services.exporter.config import ExporterSettings
from services.exporter.importer import ImportSummary, Rejection, import_lines

SHOWN_REJECTIONS = 50


def _lines(path: str, bar: tqdm) -> Iterator[bytes]:
    fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        for line in fh:
            bar.update(len(line))
            yield line
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _bar(path: str) -> tqdm:
    total = None if path == "-" else os.path.getsize(path)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="importing", file=sys.stderr,
                dynamic_ncols=True)


def import_direct(path: str, settings: ExporterSettings) -> ImportSummary:
    from services.exporter.store import DebateStore

    store = DebateStore(settings.database_url)
    try:
        with _bar(path) as bar:
            return import_lines(store, _lines(path, bar))
    finally:
        store.close()


async def import_remote(path: str, address: str, token: str | None = None, tls=None) -> ImportSummary:

    from aragora.training.v1 import exporter_pb2 as pb
    from aragora.training.v1 import exporter_pb2_grpc
    from services.common.grpc_server import CHANNEL_OPTIONS, client_interceptors
    from services.common.tls import aio_channel

    def requests(bar: tqdm):
        for n, line in enumerate(_lines(path, bar), start=1):
            if line.strip():
                yield pb.ImportDebatesRequest(record_json=line.decode("utf-8", "replace"), line=n)

    async with aio_channel(address, tls, CHANNEL_OPTIONS, client_interceptors(token)) as ch:
        with _bar(path) as bar:
            resp = await exporter_pb2_grpc.ExporterServiceStub(ch).ImportDebates(requests(bar))
    summary = ImportSummary(imported=resp.imported, updated=resp.updated, rejected=resp.rejected)
    summary.rejections = [Rejection(r.line, r.field, r.reason) for r in resp.rejections]
    return summary


def run_import(path: str, address: str | None, as_json: bool, settings: ExporterSettings) -> int:
    if path != "-" and not Path(path).is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    if address:
        try:
            summary = asyncio.run(import_remote(path, address, settings.api_token, TlsFiles.from_settings(settings)))
        except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not dump a traceback
            import grpc

            if isinstance(exc, TlsConfigError):
                print(f"error: {exc}", file=sys.stderr)
                return 2

            if isinstance(exc, grpc.aio.AioRpcError):
                print(f"error: exporter at {address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 2
            raise
    else:
        summary = import_direct(path, settings)
    if as_json:
        print(json.dumps({"imported": summary.imported, "updated": summary.updated, "rejected": summary.rejected,
                          "rejections": [r.__dict__ for r in summary.rejections]}))
    else:
        print(f"imported {summary.imported}, updated {summary.updated}, rejected {summary.rejected}")
        for r in summary.rejections[:SHOWN_REJECTIONS]:
            print(f"  line {r.line}: {r.field + ': ' if r.field else ''}{r.reason}")
        if summary.rejected > SHOWN_REJECTIONS:
            print(f"  ... and {summary.rejected - SHOWN_REJECTIONS} more")
    return 1 if summary.rejected else 0
