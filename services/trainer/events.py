"""Job events: the plain record the manager, store and watchers share, and the in-memory per-job broadcast.

An event's ``sequence`` is assigned by the manager, in arrival order, from 1 without gaps; the store persists
it before the hub publishes it, so a watcher that replays from the store and then follows the hub sees every
event exactly once (it drops live events it already replayed, and re-reads the store if it fell behind).
"""

from __future__ import annotations

import asyncio
import enum
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime


class EventType(str, enum.Enum):
    """The kinds of job event (the SSE ``event:`` names)."""

    STATUS = "status"
    STEP = "step"
    CHECKPOINT = "checkpoint"
    EVAL = "eval"
    LOG = "log"
    WARNING = "warning"
    ERROR = "error"
    DOWNLOAD = "download"


@dataclass
class JobEventRecord:
    """One event of a job's log, as stored and streamed."""

    job_id: str
    sequence: int
    time: datetime
    type: EventType
    message: str = ""
    payload: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The event's JSON shape (``events.jsonl`` lines and SSE ``data:``): sequence, time, type, message
        and the kind's payload fields at the top level."""
        return {
            "sequence": self.sequence,
            "time": self.time.isoformat(),
            "type": self.type.value,
            "message": self.message,
            **self.payload,
        }

    @property
    def terminal_status(self) -> bool:
        """True for the status event that ends the job (after it no event follows)."""
        from services.trainer.orm import JobStatus

        return self.type is EventType.STATUS and JobStatus(self.payload.get("to_status", "queued")).is_terminal()


class Subscription:
    """One watcher's live feed of a job's events. ``lagged`` is set when its queue overflowed: the watcher
    must then re-read the store from its last sequence instead of trusting the queue."""

    def __init__(self, hub: EventHub, job_id: str, maxsize: int) -> None:
        self._hub = hub
        self.job_id = job_id
        self.queue: asyncio.Queue[JobEventRecord] = asyncio.Queue(maxsize)
        self.lagged = False

    def _offer(self, event: JobEventRecord) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True

    def close(self) -> None:
        self._hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventHub:
    """Fans each job's new events out to the watchers subscribed to it (in-process, on one event loop)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._queue_size = queue_size

    def subscribe(self, job_id: str) -> Subscription:
        sub = Subscription(self, job_id, self._queue_size)
        self._subs[job_id].add(sub)
        return sub

    def publish(self, event: JobEventRecord) -> None:
        for sub in list(self._subs.get(event.job_id, ())):
            sub._offer(event)

    def watchers(self, job_id: str) -> int:
        return len(self._subs.get(job_id, ()))

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                self._subs.pop(sub.job_id, None)
