"""Wires the exporter: settings, store (migrated at start), sample debates, servicer, health, reflection and
graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc
from services.auth.authn import Authenticator
from services.auth.store import KeyStore
from services.common.grpc_server import RunningServer, ServiceBinding, serve_forever, start_server
from services.common.tls import TlsFiles, check_at_start
from services.exporter.config import ExporterSettings
from services.exporter.exports import Exporter
from services.exporter.importer import import_lines
from services.exporter.service import ExporterServicer
from services.exporter.store import DebateStore

log = logging.getLogger(__name__)

SERVICE_NAME = exporter_pb2.DESCRIPTOR.services_by_name["ExporterService"].full_name
BUNDLED_SAMPLES = Path(__file__).resolve().parent / "samples" / "debates.jsonl"


def load_samples_if_empty(store: DebateStore, settings: ExporterSettings) -> None:
    """Loads the sample debates (``samples_path`` or the bundled file) when the store holds nothing yet."""
    if not settings.load_samples or not store.is_empty():
        return
    path = settings.samples_path or BUNDLED_SAMPLES
    if not Path(path).is_file():
        log.warning("sample debates not loaded: %s does not exist", path)
        return
    with open(path, "rb") as fh:
        summary = import_lines(store, fh)
    log.info("loaded sample debates from %s: %d imported, %d rejected", path, summary.imported, summary.rejected)
    for r in summary.rejections[:10]:
        log.warning("sample line %d rejected: %s: %s", r.line, r.field, r.reason)


def open_store(settings: ExporterSettings) -> tuple[DebateStore, Exporter]:
    store = DebateStore(settings.database_url)
    load_samples_if_empty(store, settings)
    return store, Exporter(store, settings.export_dir, batch=settings.export_batch)


def authenticator(settings: ExporterSettings) -> Authenticator:
    return Authenticator(KeyStore(settings.auth_database_url), settings.api_token)


def build_bindings(store: DebateStore, exporter: Exporter) -> list[ServiceBinding]:
    return [ServiceBinding(ExporterServicer(store, exporter), exporter_pb2_grpc.add_ExporterServiceServicer_to_server,
                           SERVICE_NAME)]


async def start(settings: ExporterSettings, port: int | None = None) -> RunningServer:
    """Starts the exporter in this event loop (tests use port 0)."""
    tls = TlsFiles.from_settings(settings)
    tls.check()  # before the store is opened: a bad TLS file fails the start naming the setting
    store, exporter = await asyncio.to_thread(open_store, settings)
    running = await start_server(build_bindings(store, exporter), settings.host,
                                 settings.port if port is None else port, auth=authenticator(settings),
                                 service="exporter", tls=tls)

    async def close_store() -> None:
        store.close()

    running.on_stop.append(close_store)
    return running


async def serve(settings: ExporterSettings) -> None:
    tls = check_at_start(TlsFiles.from_settings(settings))
    store, exporter = await asyncio.to_thread(open_store, settings)

    async def close_store() -> None:
        store.close()

    await serve_forever("exporter", build_bindings(store, exporter), settings.host, settings.port,
                        settings.grace_seconds, on_stop=close_store, auth=authenticator(settings), tls=tls)
