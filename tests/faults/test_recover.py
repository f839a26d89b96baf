"""What a restarted trainer does with the files and rows a crash left, before any worker runs: the resume point
is the newest COMPLETE checkpoint, half-written temporaries go, ``events.jsonl`` is completed from the
database (a cut last line included), and a job whose trainer keeps crashing stops being resumed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from services.common.db import Database, migrate
from services.trainer.events import EventType
from services.trainer.jobs import JobManager
from services.trainer.orm import JobStatus
from services.trainer.server import MIGRATIONS
from services.trainer.store import JobStore
from tests.conftest import trainer_settings
from tests.trainer.conftest import fake_model_folder


@pytest.fixture
def world(tmp_path):
    fake_model_folder(tmp_path / "models")
    settings = trainer_settings(tmp_path, max_resumes=2)
    db = Database(settings.database_url)
    migrate(settings.database_url, MIGRATIONS)
    store = JobStore(db)
    job, _ = store.create(name="crashy", vertical="legal", base_model="test/tiny-llama",
                          training_config={"num_epochs": 1})
    store.update(job.id, start_requested_at=job.created_at)
    store.transition(job.id, JobStatus.PREPARING, "worker starting")
    store.transition(job.id, JobStatus.TRAINING, "training", total_steps=20, current_step=9)
    for step in range(1, 10):
        store.append_event(job.id, EventType.STEP, f"step {step}", {"step": step})
    yield settings, store, job.id, tmp_path / "jobs" / job.id
    db.dispose()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def restart(settings, store) -> JobManager:
    """What the trainer's start does first (the workers are not launched here)."""
    manager = JobManager(settings, store)
    manager.recover()
    return manager


def checkpoint(folder, step: int, complete: bool = True) -> None:
    path = folder / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"step": step}))


def test_the_resume_point_is_the_newest_complete_checkpoint_and_temporaries_go(world):
    settings, store, job_id, folder = world
    checkpoint(folder, 4)
    checkpoint(folder, 8, complete=False)  # cannot happen with the rename, but must not be trusted either
    (folder / "checkpoints" / ".checkpoint-9.tmp").mkdir()
    (folder / "checkpoints" / ".checkpoint-9.tmp" / "optimizer.pt").write_bytes(b"half")
    (folder / ".adapter.tmp").mkdir()
    (folder / "data").mkdir()
    (folder / "data" / ".train.jsonl.tmp").write_text("{")
    store.update(job_id, pid=dead_pid())
    manager = restart(settings, store)
    job = store.get(job_id)
    assert job.job_status is JobStatus.TRAINING and job.current_step == 4 and job.progress == pytest.approx(0.2)
    assert job.pid is None and manager._resume == [job_id]
    assert not (folder / "checkpoints" / ".checkpoint-9.tmp").exists() and not (folder / ".adapter.tmp").exists()
    assert not (folder / "data" / ".train.jsonl.tmp").exists()
    last = store.events_after(job_id, job.last_sequence - 1)[0]
    assert last.type is EventType.WARNING
    assert last.message == ("the trainer stopped unexpectedly while the job was training (restart 1 of at most 2); "
                            "resuming from checkpoint-4 (step 4 of 20)")
    assert asyncio.run(manager.artifacts(job_id)).checkpoint_path == str(folder / "checkpoints" / "checkpoint-4")


def test_events_jsonl_is_completed_from_the_database(world):
    settings, store, job_id, folder = world
    events = store.events_after(job_id)
    folder.mkdir(parents=True)
    lines = [json.dumps(e.to_dict()) + "\n" for e in events[:5]]
    cut = json.dumps(events[5].to_dict())[:17]  # killed half-way through a line
    (folder / "events.jsonl").write_text("".join(lines) + cut)
    store.update(job_id, pid=dead_pid())
    restart(settings, store)
    written = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    everything = store.events_after(job_id)
    assert [w["sequence"] for w in written] == [e.sequence for e in everything]
    assert written == [json.loads(json.dumps(e.to_dict())) for e in everything]


def test_a_clean_stop_does_not_count_and_repeated_crashes_fail_the_job(world):
    settings, store, job_id, folder = world
    restart(settings, store)  # pid None: the previous trainer stopped cleanly
    assert store.get(job_id).job_status is JobStatus.TRAINING
    for n in (1, 2):
        store.update(job_id, pid=dead_pid())
        restart(settings, store)
        assert store.get(job_id).job_status is JobStatus.TRAINING, n
    store.update(job_id, pid=dead_pid())
    restart(settings, store)
    job = store.get(job_id)
    assert job.job_status is JobStatus.FAILED
    assert job.error == ("trainer restarted while the job was running, 3 times: not resuming it again "
                         "(TRAINER_MAX_RESUMES is 2)")
    messages = [e.message for e in store.events_after(job_id)]
    assert sum(m.startswith("the trainer restarted while the job was training; resuming") for m in messages) == 1
    assert sum(m.startswith("the trainer stopped unexpectedly") for m in messages) == 2
