"""The status machine and the job store on a real SQLite file migrated by Alembic."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from services.common.db import Database, migrate
from services.common.errors import AlreadyExists, FailedPrecondition, NotFound
from services.trainer.events import EventType
from services.trainer.orm import JobStatus
from services.trainer.server import MIGRATIONS
from services.trainer.store import JobStore

S = JobStatus


def test_status_machine_is_the_guides():
    legal = {(a, b) for a in S for b in S if a.can_move_to(b)}
    assert legal == {
        (S.QUEUED, S.PREPARING), (S.PREPARING, S.TRAINING), (S.TRAINING, S.COMPLETED),
        (S.QUEUED, S.FAILED), (S.PREPARING, S.FAILED), (S.TRAINING, S.FAILED),
        (S.QUEUED, S.CANCELLED), (S.PREPARING, S.CANCELLED), (S.TRAINING, S.CANCELLED),
    }
    assert {s for s in S if s.is_terminal()} == {S.COMPLETED, S.FAILED, S.CANCELLED}
    with pytest.raises(FailedPrecondition, match="job job-1 is completed: it cannot become training"):
        S.COMPLETED.check_move_to(S.TRAINING, "job-1")


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    db = Database(url)
    migrate(url, MIGRATIONS)
    migrate(url, MIGRATIONS)  # idempotent: a second start finds the schema current
    yield JobStore(db)
    db.dispose()


def test_migrations_create_the_schema(store):
    insp = inspect(store.db.engine)
    assert {"jobs", "job_events", "alembic_version"} <= set(insp.get_table_names())
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("job_events")}
    assert ("job_id", "sequence") in uniques
    # Names are unique per owner (migration 0003: another user's job name must not reveal that job).
    assert ("owner", "name") in {tuple(u["column_names"]) for u in insp.get_unique_constraints("jobs")}


def test_create_transition_and_events(store):
    job, first = store.create(name="a", vertical="legal", base_model="m", training_config={"lora_r": 8})
    assert job.id.startswith("job-") and len(job.id) > 8
    assert job.job_status is S.QUEUED and first.sequence == 1 and first.payload["to_status"] == "queued"
    with pytest.raises(AlreadyExists, match="'a' already exists"):
        store.create(name="a", vertical="", base_model="m", training_config={})

    job, ev = store.transition(job.id, S.PREPARING, "worker starting")
    assert ev.sequence == 2 and job.started_at is not None
    _, ev = store.append_event(job.id, EventType.STEP, "step 1", {"step": 1}, current_step=1, loss=2.5)
    assert ev.sequence == 3 and store.get(job.id).loss == 2.5
    with pytest.raises(FailedPrecondition, match="is preparing: it cannot become completed"):
        store.transition(job.id, S.COMPLETED)
    job, ev = store.transition(job.id, S.FAILED, "boom")
    assert job.error == "boom" and job.completed_at is not None and ev.terminal_status
    assert [e.sequence for e in store.events_after(job.id)] == [1, 2, 3, 4]
    assert [e.sequence for e in store.events_after(job.id, 2)] == [3, 4]
    assert [e.sequence for e in store.events_after(job.id, 1, limit=2)] == [2, 3]
    assert store.counts() == {"queued": 0, "preparing": 0, "training": 0, "completed": 0, "failed": 1,
                              "cancelled": 0, "total": 1}
    with pytest.raises(NotFound):
        store.get("job-nope")
