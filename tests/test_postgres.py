"""The stores on PostgreSQL (the deployment's database): migrations run at start and the real servers work on
it. Runs when TEST_POSTGRES_URL points at a server where the user may create databases (.ci/run starts one);
each test gets a fresh database and drops it afterwards."""

from __future__ import annotations

import json
import os
import uuid

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from services.exporter import server as exporter_server
from services.trainer import server as trainer_server
from tests.conftest import exporter_settings, trainer_settings
from tests.exporter.conftest import debate
from tests.trainer.conftest import fake_model_folder

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN_URL, reason="TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")


@pytest.fixture
def pg_url():
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


async def test_exporter_on_postgres(tmp_path, pg_url):
    running = await exporter_server.start(exporter_settings(tmp_path, database_url=pg_url), port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = exporter_pb2_grpc.ExporterServiceStub(ch)
            records = [debate(f"debate-{i:03d}", vertical="legal" if i % 2 else "code") for i in range(12)]
            records.append(dict(debate("debate-bad"), task=""))
            reqs = [exporter_pb2.ImportDebatesRequest(record_json=json.dumps(r)) for r in records]
            resp = await stub.ImportDebates(iter(reqs), timeout=30)
            assert (resp.imported, resp.rejected) == (12, 1)
            resp = await stub.ImportDebates(iter(reqs[:3]), timeout=30)
            assert (resp.imported, resp.updated) == (0, 3)
            got = []
            async for batch in stub.ExportSFT(exporter_pb2.ExportSFTRequest(vertical="legal"), timeout=30):
                got.extend(r.metadata.debate_id for r in batch.records)
            assert got == sorted(r["id"] for r in records[:12] if r["vertical"] == "legal")
            stats = await stub.GetExportStats(exporter_pb2.GetExportStatsRequest(), timeout=30)
            assert stats.total_debates == 12 and dict(stats.debates_per_vertical) == {"legal": 6, "code": 6}
    finally:
        await running.stop(0.5)


async def test_trainer_on_postgres(tmp_path, pg_url):
    settings = trainer_settings(tmp_path, database_url=pg_url)
    fake_model_folder(settings.models_dir)
    running = await trainer_server.start(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = trainer_pb2_grpc.TrainerServiceStub(ch)
            req = trainer_pb2.CreateJobRequest(name="pg-job", vertical="legal", base_model="test/tiny-llama",
                                               training_config=trainer_pb2.TrainingConfig(max_seq_length=128))
            job = (await stub.CreateJob(req, timeout=30)).job
            assert job.status == trainer_pb2.JOB_STATUS_QUEUED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateJob(req, timeout=30)
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
            listed = await stub.ListJobs(trainer_pb2.ListJobsRequest(vertical="legal"), timeout=30)
            assert [j.id for j in listed.jobs] == [job.id]
            counts = await stub.GetJobCounts(trainer_pb2.GetJobCountsRequest(), timeout=30)
            assert (counts.queued, counts.total) == (1, 1)
    finally:
        await running.stop(0.5)
