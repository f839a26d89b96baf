"""The job store: jobs and their event logs behind one small interface over SQLAlchemy.

Every change of a job's status is written together with its ``status`` event in one transaction, and an
event's sequence number comes from the job row's ``last_sequence`` in the same transaction, so the log has
no gaps even across restarts. Rows leave the store detached (``expire_on_commit=False``) and read-only by
convention: callers change jobs only through these methods. The methods block (synchronous SQLAlchemy): the
event loop calls them through ``eventlog.StoreCalls``, on threads.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select

from services.common.db import Database
from services.common.errors import AlreadyExists, NotFound
from services.trainer.events import EventType, JobEventRecord
from services.trainer.orm import Job, JobEvent, JobStatus, utcnow


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:16]}"


def _record(row: JobEvent) -> JobEventRecord:
    return JobEventRecord(row.job_id, row.sequence, row.time, EventType(row.type), row.message, dict(row.payload or {}))


class JobStore:
    """Jobs and their event logs in one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- jobs -------------------------------------------------------------------------------------------

    def create(self, *, name: str, vertical: str, base_model: str, training_config: dict,
               owner: str | None = None) -> tuple[Job, JobEventRecord]:
        """Inserts a QUEUED job and its first status event. ``AlreadyExists`` if the name is taken."""
        with self.db.session("job") as s:
            same_owner = Job.owner == owner if owner is not None else Job.owner.is_(None)
            if s.scalar(select(Job.id).where(Job.name == name, same_owner)) is not None:
                raise AlreadyExists(f"a job named {name!r} already exists")
            now = utcnow()
            job = Job(
                id=new_job_id(), name=name, vertical=vertical, base_model=base_model,
                training_config=training_config, status=JobStatus.QUEUED.value, progress=0.0, current_epoch=0,
                current_step=0, total_steps=0, training_examples=0, dataset_examples=0, training_debates=0,
                created_at=now, last_sequence=0, owner=owner,
            )
            s.add(job)
            s.flush()
            event = self._append(s, job, EventType.STATUS, "job created",
                                 {"from_status": None, "to_status": JobStatus.QUEUED.value, "reason": "created"}, now)
        return job, event

    def get(self, job_id: str) -> Job:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id!r} not found")
            return job

    def list(self, vertical: str = "", status: JobStatus | None = None, limit: int = 0,
             offset: int = 0, owner: str | None = None) -> tuple[list[Job], int]:
        """Jobs newest first (and how many match), optionally filtered (``owner``: that owner's only);
        ``offset`` skips that many first."""
        query = select(Job)
        count = select(func.count()).select_from(Job)
        if owner is not None:
            query, count = query.where(Job.owner == owner), count.where(Job.owner == owner)
        if vertical:
            query, count = query.where(Job.vertical == vertical), count.where(Job.vertical == vertical)
        if status is not None:
            query, count = query.where(Job.status == status.value), count.where(Job.status == status.value)
        query = query.order_by(Job.created_at.desc(), Job.id.desc())
        if limit > 0:
            query = query.limit(limit)
        if offset > 0:
            query = query.offset(offset)
        with self.db.session() as s:
            return list(s.scalars(query)), int(s.scalar(count) or 0)

    def counts(self, owner: str | None = None) -> dict[str, int]:
        query = select(Job.status, func.count()).group_by(Job.status)
        if owner is not None:
            query = query.where(Job.owner == owner)
        with self.db.session() as s:
            rows = s.execute(query).all()
        out = {st.value: 0 for st in JobStatus}
        for status, n in rows:
            out[status] = int(n)
        out["total"] = sum(out[st.value] for st in JobStatus)
        return out

    def with_status(self, *statuses: JobStatus) -> list[Job]:
        with self.db.session() as s:
            return list(s.scalars(
                select(Job).where(Job.status.in_([st.value for st in statuses])).order_by(Job.created_at)))

    def waiting(self) -> list[Job]:
        """QUEUED jobs whose start was requested, in the order they asked."""
        with self.db.session() as s:
            return list(s.scalars(
                select(Job)
                .where(Job.status == JobStatus.QUEUED.value, Job.start_requested_at.is_not(None))
                .order_by(Job.start_requested_at, Job.created_at, Job.id)
            ))

    def update(self, job_id: str, **fields) -> Job:
        """Sets plain fields (never ``status``: that goes through ``transition``)."""
        assert "status" not in fields
        with self.db.session() as s:
            job = self._locked(s, job_id)
            for k, v in fields.items():
                setattr(job, k, v)
            return job

    def transition(self, job_id: str, to: JobStatus, reason: str = "", message: str = "",
                   **fields) -> tuple[Job, JobEventRecord]:
        """Moves a job to ``to`` (``FailedPrecondition`` naming the current status if illegal), stamps the
        timestamps, sets ``fields`` and writes the status event, all in one transaction."""
        with self.db.session() as s:
            job = self._locked(s, job_id)
            current = job.job_status
            current.check_move_to(to, job_id)
            now = utcnow()
            job.status = to.value
            if to is JobStatus.PREPARING and job.started_at is None:
                job.started_at = now
            if to.is_terminal():
                job.completed_at = now
                job.pid = None
            if to is JobStatus.FAILED:
                job.error = reason or "failed"
            for k, v in fields.items():
                setattr(job, k, v)
            text = message or (f"{current.value} -> {to.value}" + (f": {reason}" if reason else ""))
            event = self._append(s, job, EventType.STATUS, text,
                                 {"from_status": current.value, "to_status": to.value, "reason": reason}, now)
            return job, event

    # -- events -----------------------------------------------------------------------------------------

    def append_event(self, job_id: str, type: EventType, message: str = "", payload: dict | None = None,
                     time: datetime | None = None, **fields) -> tuple[Job, JobEventRecord]:
        """Appends an event with the job's next sequence number and sets ``fields`` on the job, atomically."""
        with self.db.session() as s:
            job = self._locked(s, job_id)
            for k, v in fields.items():
                setattr(job, k, v)
            return job, self._append(s, job, type, message, payload or {}, time or utcnow())

    def events_after(self, job_id: str, after: int = 0, limit: int = 0) -> list[JobEventRecord]:
        query = (select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.sequence > after)
                 .order_by(JobEvent.sequence))
        if limit > 0:
            query = query.limit(limit)
        with self.db.session() as s:
            return [_record(r) for r in s.scalars(query)]

    def count_events(self, job_id: str, type: EventType, prefix: str = "") -> int:
        """How many of the job's events are of ``type`` (and have a message starting with ``prefix``)."""
        query = select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id,
                                                                JobEvent.type == type.value)
        if prefix:
            query = query.where(func.substr(JobEvent.message, 1, len(prefix)) == prefix)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    # -- helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _locked(s, job_id: str) -> Job:
        # SELECT ... FOR UPDATE on PostgreSQL; SQLite serialises writers anyway.
        job = s.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None:
            raise NotFound(f"job {job_id!r} not found")
        return job

    @staticmethod
    def _append(s, job: Job, type: EventType, message: str, payload: dict, time: datetime) -> JobEventRecord:
        job.last_sequence = (job.last_sequence or 0) + 1
        row = JobEvent(job_id=job.id, sequence=job.last_sequence, time=time, type=type.value,
                       message=message, payload=payload)
        s.add(row)
        return JobEventRecord(job.id, row.sequence, time, type, message, dict(payload))
