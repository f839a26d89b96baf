"""Migration 0003 (jobs.owner, names unique per owner) on a job store that already holds jobs: nothing is lost,
old jobs have no owner, and two users may use the same job name while one user may not twice."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from services.common.db import Database
from services.common.errors import AlreadyExists
from services.trainer.server import MIGRATIONS
from services.trainer.store import JobStore


def _upgrade(url: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, revision)


def test_upgrade_keeps_jobs_events_and_deployments(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    _upgrade(url, "0002_deployments")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO jobs (id, name, vertical, base_model, training_config, status, progress, current_epoch, "
            "current_step, total_steps, training_examples, dataset_examples, training_debates, created_at, "
            "last_sequence) VALUES ('job-1', 'old', '', 'm', '{}', 'completed', 1, 1, 1, 1, 0, 0, 0, "
            "'2026-01-01 00:00:00', 1)"))
        c.execute(sa.text("INSERT INTO job_events (job_id, sequence, time, type, message, payload) VALUES "
                          "('job-1', 1, '2026-01-01 00:00:00', 'status', 'job created', '{}')"))
        c.execute(sa.text("INSERT INTO deployments (name, job_id, base_model, created_at) VALUES "
                          "('old-model', 'job-1', 'm', '2026-01-01 00:00:00')"))
    engine.dispose()
    _upgrade(url, "head")
    engine = sa.create_engine(url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT id, owner FROM jobs")).all() == [("job-1", None)]
        assert c.execute(sa.text("SELECT count(*) FROM job_events")).scalar() == 1
        assert c.execute(sa.text("SELECT count(*) FROM deployments")).scalar() == 1
    engine.dispose()

    store = JobStore(Database(url))
    with pytest.raises(AlreadyExists):
        store.create(name="old", vertical="", base_model="m", training_config={})  # no owner: one namespace
    store.create(name="old", vertical="", base_model="m", training_config={}, owner="alice")
    store.create(name="old", vertical="", base_model="m", training_config={}, owner="bob")
    with pytest.raises(AlreadyExists):
        store.create(name="old", vertical="", base_model="m", training_config={}, owner="alice")
    store.db.dispose()
