"""WatchJob's ordering guarantees on the manager itself (real store on SQLite), with events appended at the
moments that race: between the snapshot and the replay, faster than a slow watcher reads, after it left."""

from __future__ import annotations

import asyncio

import pytest

from services.common.db import Database, migrate
from services.trainer.events import EventHub, EventType
from services.trainer.jobs import JobManager
from services.trainer.orm import Job, JobStatus
from services.trainer.server import MIGRATIONS
from services.trainer.store import JobStore
from tests.conftest import trainer_settings
from tests.trainer.conftest import TINY, fake_model_folder, write_dataset


@pytest.fixture
def manager(tmp_path):
    settings = trainer_settings(tmp_path)
    fake_model_folder(settings.models_dir)
    write_dataset(settings.data_root)
    db = Database(settings.database_url)
    migrate(settings.database_url, MIGRATIONS)
    yield JobManager(settings, JobStore(db), EventHub(queue_size=4))
    db.dispose()


def sequences(items) -> list[int]:
    return [i.sequence for i in items if not isinstance(i, Job)]


async def test_events_between_snapshot_and_replay_come_once(manager):
    job = await manager.create("race", "legal", TINY, {})
    watch = manager.watch(job.id)
    snapshot = await anext(watch)
    assert isinstance(snapshot, Job) and snapshot.id == job.id
    # Published after the watcher subscribed but before it read the store: in both the store and its queue.
    await manager.events.append(job.id, EventType.LOG, "one")
    await manager.events.append(job.id, EventType.LOG, "two")
    got = [await anext(watch) for _ in range(3)]
    await manager.events.append(job.id, EventType.LOG, "three")
    await manager.events.transition(job.id, JobStatus.CANCELLED, "cancelled by user")
    got += [item async for item in watch]
    assert sequences(got) == [1, 2, 3, 4, 5]
    assert [e.message for e in got][:4] == ["job created", "one", "two", "three"]


async def test_a_slow_watcher_that_overflows_its_queue_reads_the_store(manager):
    job = await manager.create("slow", "legal", TINY, {})
    watch = manager.watch(job.id, after_sequence=0)
    await anext(watch)
    assert (await anext(watch)).sequence == 1
    waiter = asyncio.ensure_future(anext(watch))  # now waiting on the live queue (4 slots)
    await asyncio.sleep(0)
    for i in range(20):
        await manager.events.append(job.id, EventType.LOG, f"burst {i}")
    got = [await waiter]
    await manager.events.transition(job.id, JobStatus.CANCELLED, "cancelled by user")
    got += [item async for item in watch]
    assert sequences(got) == list(range(2, 23))


async def test_many_watchers_and_one_leaving(manager):
    job = await manager.create("many", "legal", TINY, {})
    watches = [manager.watch(job.id) for _ in range(5)]
    for w in watches:
        await anext(w)
    assert manager.hub.watchers(job.id) == 5
    leaver = watches.pop()
    await leaver.aclose()  # a client going away
    assert manager.hub.watchers(job.id) == 4
    assert (await manager.get(job.id)).job_status is JobStatus.QUEUED
    await manager.events.append(job.id, EventType.WARNING, "careful")
    await manager.events.transition(job.id, JobStatus.CANCELLED, "cancelled by user")
    results = [[item async for item in w] for w in watches]
    assert all(sequences(r) == [1, 2, 3] for r in results)
    assert manager.hub.watchers(job.id) == 0


async def test_resume_after_the_terminal_event_ends_at_once(manager):
    job = await manager.create("done", "legal", TINY, {})
    await manager.events.transition(job.id, JobStatus.CANCELLED, "cancelled by user")
    items = [item async for item in manager.watch(job.id, after_sequence=2)]
    assert len(items) == 1 and isinstance(items[0], Job)
    items = [item async for item in manager.watch(job.id, after_sequence=1)]
    assert sequences(items) == [2]


async def test_a_database_write_that_waits_on_a_lock_stalls_no_watcher(manager, tmp_path):
    """Store calls run off the event loop: while another connection holds the SQLite write lock (a real slow
    database), an event being recorded waits for it on the store's thread, and meanwhile the loop serves a new
    watcher its snapshot and replay from the database and reads the job. Once the lock goes, the event is
    recorded and reaches the watchers in order."""
    import sqlite3

    job = await manager.create("locked", "legal", TINY, {})
    early = manager.watch(job.id)
    assert isinstance(await anext(early), Job) and (await anext(early)).sequence == 1
    blocker = sqlite3.connect(tmp_path / "trainer" / "jobs.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # WAL: readers go on, writers wait
    try:
        pending = asyncio.ensure_future(manager.events.append(job.id, EventType.LOG, "after the lock"))
        late = manager.watch(job.id)
        snapshot, replayed = await anext(late), await anext(late)
        assert isinstance(snapshot, Job) and replayed.sequence == 1
        assert (await manager.get(job.id)).job_status is JobStatus.QUEUED
        assert not pending.done()  # all of the above happened while the write was still waiting
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    event = await pending
    assert event.sequence == 2 and event.message == "after the lock"
    await manager.events.transition(job.id, JobStatus.CANCELLED, "cancelled by user")
    for watch in (early, late):
        assert sequences([item async for item in watch]) == [2, 3]
