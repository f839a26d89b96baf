"""Each job's event log: recorded in the database (the log of record), appended to the job folder's
``events.jsonl``, published to the job's watchers; replayed and followed by ``watch``; repaired after a crash.

The database is synchronous SQLAlchemy: every store call the event loop makes goes through ``StoreCalls``,
writes on one thread in submission order (an event's line reaches ``events.jsonl`` in sequence order), reads on
the default thread pool, so a slow database never stalls the loop and with it every WatchJob stream.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from services.trainer.artifacts import JobLayout
from services.trainer.events import EventHub, EventType, JobEventRecord, Subscription
from services.trainer.orm import Job, JobStatus
from services.trainer.store import JobStore

log = logging.getLogger(__name__)

REPLAY_BATCH = 500


class StoreCalls:
    """Runs store calls off the event loop: ``write`` on one thread, in order; ``read`` on the default pool."""

    def __init__(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer-store")

    async def write(self, fn: Callable, *args, **kwargs) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, functools.partial(fn, *args, **kwargs))

    async def read(self, fn: Callable, *args, **kwargs) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def close(self) -> None:
        self._writer.shutdown(wait=True)


class EventLog:
    """Records, persists, publishes and replays job events. ``record*`` are the blocking steps (store +
    ``events.jsonl``), ``append`` / ``transition`` run them off the loop and publish."""

    def __init__(self, store: JobStore, hub: EventHub, layout_of: Callable[[str], JobLayout],
                 calls: StoreCalls | None = None) -> None:
        self.store = store
        self.hub = hub
        self.layout_of = layout_of
        self.calls = calls or StoreCalls()
        self._writers: dict[str, TextIO] = {}

    # -- the file of a running job -----------------------------------------------------------------------------

    def open_file(self, job_id: str) -> None:
        """Keeps the job's ``events.jsonl`` open for appends while its worker runs."""
        self._writers[job_id] = open(self.layout_of(job_id).events_file, "a", encoding="utf-8")

    def close_file(self, job_id: str) -> None:
        fh = self._writers.pop(job_id, None)
        if fh is not None:
            fh.close()

    # -- blocking steps (on the store's writer thread, or at start-up before the loop serves) -----------------

    def record(self, job_id: str, type: EventType, message: str = "", payload: dict | None = None,
               **fields) -> JobEventRecord:
        """Appends an event (and sets ``fields`` on the job) in the store, then to ``events.jsonl``."""
        _job, event = self.store.append_event(job_id, type, message, payload, **fields)
        self.write_line(event)
        return event

    def record_transition(self, job_id: str, to: JobStatus, reason: str = "", **fields) -> tuple[Job, JobEventRecord]:
        job, event = self.store.transition(job_id, to, reason, **fields)
        self.write_line(event)
        return job, event

    def record_created(self, **values) -> tuple[Job, JobEventRecord]:
        job, event = self.store.create(**values)
        self.write_line(event)
        return job, event

    def write_line(self, event: JobEventRecord) -> None:
        """After the event is in the database: appends it to the job's ``events.jsonl``."""
        line = json.dumps(event.to_dict(), ensure_ascii=False) + "\n"
        try:
            fh = self._writers.get(event.job_id)
            if fh is not None:
                fh.write(line)
                fh.flush()
            else:
                path = self.layout_of(event.job_id).events_file
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as out:
                    out.write(line)
        except OSError:
            # The database holds the log; a full disk must not stop the job's bookkeeping.
            log.exception("job %s: could not append to events.jsonl", event.job_id)

    # -- on the event loop -------------------------------------------------------------------------------------

    async def append(self, job_id: str, type: EventType, message: str = "", payload: dict | None = None,
                     **fields) -> JobEventRecord:
        event = await self.calls.write(self.record, job_id, type, message, payload, **fields)
        self.hub.publish(event)
        return event

    async def transition(self, job_id: str, to: JobStatus, reason: str = "", **fields) -> Job:
        job, event = await self.calls.write(self.record_transition, job_id, to, reason, **fields)
        self.hub.publish(event)
        return job

    async def create(self, **values) -> Job:
        job, event = await self.calls.write(self.record_created, **values)
        self.hub.publish(event)
        return job

    async def update(self, job_id: str, **fields) -> Job:
        return await self.calls.write(self.store.update, job_id, **fields)

    async def get(self, job_id: str) -> Job:
        return await self.calls.read(self.store.get, job_id)

    def append_now(self, job_id: str, type: EventType, message: str = "", payload: dict | None = None,
                   **fields) -> JobEventRecord:
        """``append`` blocking, for start-up (``recover``) before any call is served."""
        event = self.record(job_id, type, message, payload, **fields)
        self.hub.publish(event)
        return event

    def transition_now(self, job_id: str, to: JobStatus, reason: str = "", **fields) -> Job:
        job, event = self.record_transition(job_id, to, reason, **fields)
        self.hub.publish(event)
        return job

    # -- repair ------------------------------------------------------------------------------------------------

    def sync_file(self, job_id: str) -> None:
        """Completes ``events.jsonl`` from the database (the log of record): the trainer may have been killed
        after committing an event but before writing its line, or half-way through a line. A cut line is
        dropped, then every event after the last whole line is appended, so the file keeps every event in order."""
        path = self.layout_of(job_id).events_file
        last = 0
        try:
            with open(path, "rb+") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 65536))
                tail = fh.read()
                if tail and not tail.endswith(b"\n"):
                    # A line cut short by the kill: drop it (the database still has that event).
                    cut = len(tail) - (tail.rfind(b"\n") + 1)
                    fh.truncate(size - cut)
                    tail = tail[: len(tail) - cut]
            for raw in reversed(tail.splitlines()):
                try:
                    last = int(json.loads(raw)["sequence"])
                    break
                except (ValueError, KeyError, TypeError):
                    continue
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("job %s: could not read events.jsonl", job_id)
            return
        missing = self.store.events_after(job_id, last)
        if not missing:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(event.to_dict(), ensure_ascii=False) + "\n" for event in missing)
        except OSError:
            log.exception("job %s: could not complete events.jsonl", job_id)

    # -- watching ----------------------------------------------------------------------------------------------

    async def watch(self, job_id: str, after_sequence: int = 0) -> AsyncIterator[Job | JobEventRecord]:
        """Yields the job (snapshot), then each of its events with a sequence above ``after_sequence`` in
        order, without gaps or repeats, ending after the event that makes it terminal. Leaving early (the
        consumer closing the generator) only unsubscribes."""
        after_sequence = max(0, int(after_sequence))
        # Subscribe before reading the store: an event persisted after the read is then in the queue.
        with self.hub.subscribe(job_id) as sub:
            job = await self.get(job_id)
            yield job
            last = after_sequence
            async for event in self._replay(job_id, last):
                yield event
                last = event.sequence
                if event.terminal_status:
                    return
            if job.job_status.is_terminal():
                return  # the terminal event was at or before after_sequence
            while True:
                event = await self._next_live(sub)
                if event is None or event.sequence > last + 1:
                    # Fell behind (queue overflow) or a gap: the store has everything, in order.
                    async for stored in self._replay(job_id, last):
                        yield stored
                        last = stored.sequence
                        if stored.terminal_status:
                            return
                    continue
                if event.sequence <= last:
                    continue  # already replayed
                yield event
                last = event.sequence
                if event.terminal_status:
                    return

    async def _replay(self, job_id: str, after: int) -> AsyncIterator[JobEventRecord]:
        while True:
            batch = await self.calls.read(self.store.events_after, job_id, after, REPLAY_BATCH)
            for event in batch:
                yield event
                after = event.sequence
            if len(batch) < REPLAY_BATCH:
                return

    @staticmethod
    async def _next_live(sub: Subscription) -> JobEventRecord | None:
        """The next published event, or None when the subscription overflowed and lost some."""
        if sub.lagged:
            sub.lagged = False
            while not sub.queue.empty():
                sub.queue.get_nowait()
            return None
        return await sub.queue.get()
