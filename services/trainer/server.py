"""Wires the trainer: migrations, job store, job manager, servicer, health, reflection and graceful shutdown.

Start-up order: migrate the database, recover the jobs a previous process left running (before any call can
see them), serve, then start the jobs whose start was requested. On stop: the server stops taking calls,
then the manager ends its workers (SIGTERM, SIGKILL after 5 s) and the database closes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aragora.training.v1 import trainer_pb2, trainer_pb2_grpc
from services.common.db import Database, migrate
from services.common.grpc_server import RunningServer, ServiceBinding, serve_forever, start_server
from services.common.tls import TlsFiles, check_at_start
from services.trainer import worker_events
from services.trainer.config import TrainerSettings
from services.trainer.inference import service as inference
from services.trainer.jobs import JobManager
from services.trainer.model_export.manager import ExportManager
from services.trainer.model_export.service import bindings as export_bindings
from services.trainer.service import TrainerServicer
from services.trainer.store import JobStore

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
MIGRATIONS = Path(__file__).with_name("migrations")

log = logging.getLogger(__name__)


def open_manager(settings: TrainerSettings) -> tuple[JobManager, Database]:
    """Migrates the job store, builds the manager and recovers interrupted jobs."""
    db = Database(settings.database_url)  # first: it makes the folder of a SQLite file
    migrate(settings.database_url, MIGRATIONS)
    manager = JobManager(settings, JobStore(db))
    recovered = manager.recover()
    if recovered:
        log.warning("recovered %d job(s) left running by a previous trainer: %s", len(recovered), ", ".join(recovered))
    return manager, db


def build_bindings(manager: JobManager, exports: ExportManager | None = None,
                   inf: inference.Inference | None = None) -> list[ServiceBinding]:
    bindings = [ServiceBinding(TrainerServicer(manager), trainer_pb2_grpc.add_TrainerServiceServicer_to_server,
                               SERVICE_NAME),
                ServiceBinding(worker_events.WorkerEventsServicer(manager), worker_events.add_to_server,
                               worker_events.SERVICE_NAME)]
    if exports is not None:
        bindings.extend(export_bindings(exports))
    if inf is not None:
        bindings.append(ServiceBinding(inference.InferenceServicer(inf), inference.add_to_server,
                                       inference.SERVICE_NAME))
    return bindings


def _stopper(manager: JobManager, db: Database, exports: ExportManager | None = None,
             inf: inference.Inference | None = None):
    async def stop() -> None:
        if exports is not None:
            await exports.shutdown()
        if inf is not None:
            inf.close()
        await manager.shutdown()
        db.dispose()

    return stop


async def start(settings: TrainerSettings, port: int | None = None) -> RunningServer:
    """Starts the trainer in this event loop (tests use port 0). ``running.manager`` is the job manager."""
    tls = TlsFiles.from_settings(settings)
    tls.check()  # before the job store is opened: a bad TLS file fails the start naming the setting
    settings.worker_tls().check()
    manager, db = open_manager(settings)
    exports = ExportManager(manager)
    inf = inference.Inference(settings, db, manager.store.get)
    running = await start_server(build_bindings(manager, exports, inf), settings.host,
                                 settings.port if port is None else port, auth=manager.auth, service="trainer",
                                 tls=tls)
    running.on_stop.append(_stopper(manager, db, exports, inf))
    running.manager = manager  # type: ignore[attr-defined]  # tests reach the manager (e.g. worker pids)
    running.exports = exports  # type: ignore[attr-defined]
    running.inference = inf  # type: ignore[attr-defined]
    manager.serving_at(settings.host, running.port)
    manager.start_background()
    return running


async def serve(settings: TrainerSettings) -> None:
    tls = check_at_start(TlsFiles.from_settings(settings))
    check_at_start(settings.worker_tls())
    manager, db = open_manager(settings)
    exports = ExportManager(manager)
    inf = inference.Inference(settings, db, manager.store.get)
    manager.serving_at(settings.host, settings.port)
    manager.start_background()
    await serve_forever("trainer", build_bindings(manager, exports, inf), settings.host, settings.port,
                        settings.grace_seconds, on_stop=_stopper(manager, db, exports, inf),
                        auth=manager.auth, tls=tls)
