"""Fixtures shared by every layer of tests: real in-process gRPC servers on port 0 and the gateway's ASGI app
talking to them over real gRPC. Room-specific fixtures live in tests/<room>/conftest.py."""

from __future__ import annotations

import os
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The keys store of every service a test starts, unless the test names its own: a fresh path no key is written to.
# (Otherwise a developer's var/auth/keys.db holding keys would turn users and roles on for the whole suite.)
os.environ.setdefault("GATEWAY_AUTH_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='aragora-test-auth-')}/keys.db")
os.environ.setdefault("TRAINER_AUTH_DATABASE_URL", os.environ["GATEWAY_AUTH_DATABASE_URL"])
os.environ.setdefault("EXPORTER_AUTH_DATABASE_URL", os.environ["GATEWAY_AUTH_DATABASE_URL"])

import httpx
import pytest

from services.exporter import server as exporter_server
from services.exporter.config import ExporterSettings
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.trainer import server as trainer_server
from services.trainer.config import TrainerSettings
from tests.support.services import kill_started

REPO = Path(__file__).resolve().parent.parent


def exporter_settings(tmp_path: Path, **kw) -> ExporterSettings:
    base = dict(
        database_url=f"sqlite:///{tmp_path}/exporter/debates.db",
        export_dir=tmp_path / "exports",
        load_samples=False,
        grace_seconds=0.5,
    )
    base.update(kw)
    return ExporterSettings(**base)


def trainer_settings(tmp_path: Path, exporter_address: str = "127.0.0.1:1", **kw) -> TrainerSettings:
    base = dict(
        database_url=f"sqlite:///{tmp_path}/trainer/jobs.db",
        jobs_dir=tmp_path / "jobs",
        models_dir=tmp_path / "models",
        data_root=tmp_path / "data",
        exporter_address=exporter_address,
        grace_seconds=0.5,
    )
    base.update(kw)
    return TrainerSettings(**base)


@pytest.fixture(scope="session", autouse=True)
def _no_service_outlives_the_session():
    """Whatever service process a test or fixture started (tests/support/services.py) ends with the session,
    its process group (a trainer's workers) included, even when the test that started it failed."""
    yield
    kill_started()


@pytest.fixture
async def exporter(tmp_path):
    """A real exporter gRPC server on a free port, on a fresh SQLite file."""
    running = await exporter_server.start(exporter_settings(tmp_path), port=0)
    yield running
    await running.stop(0.5)


@pytest.fixture
async def trainer(tmp_path, exporter):
    """A real trainer gRPC server on a free port, on a fresh SQLite file, pointed at ``exporter``."""
    running = await trainer_server.start(trainer_settings(tmp_path, exporter.address), port=0)
    yield running
    await running.stop(0.5)


@asynccontextmanager
async def gateway_client(exporter_address: str, trainer_address: str, **kw):
    """The gateway's ASGI app (lifespan run) behind an httpx client, talking gRPC to the given addresses."""
    settings = GatewaySettings(exporter_address=exporter_address, trainer_address=trainer_address, **kw)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture
async def gateway(exporter, trainer):
    async with gateway_client(exporter.address, trainer.address) as client:
        yield client
