"""The trainer's tables (SQLAlchemy 2 ORM) and the job status machine.

``jobs`` holds one row per fine-tuning job; ``job_events`` its event log, numbered per job from 1 without
gaps (unique ``(job_id, sequence)``). The schema is created by the Alembic migrations in ``migrations/``,
never by ``create_all``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from services.common.errors import FailedPrecondition


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values and returns them naive)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class JobStatus(str, enum.Enum):
    """A job's status. ``queued -> preparing -> training -> completed``; ``failed`` and ``cancelled`` from any
    non-terminal status. The string values are the REST API's."""

    QUEUED = "queued"
    PREPARING = "preparing"
    TRAINING = "training"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    def can_move_to(self, target: JobStatus) -> bool:
        return target in _TRANSITIONS[self]

    def check_move_to(self, target: JobStatus, job_id: str = "") -> None:
        """Raises ``FailedPrecondition`` (with the current status) unless ``self -> target`` is legal."""
        if not self.can_move_to(target):
            who = f"job {job_id} " if job_id else "job "
            raise FailedPrecondition(f"{who}is {self.value}: it cannot become {target.value}")


_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PREPARING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.PREPARING: frozenset({JobStatus.TRAINING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.TRAINING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

RUNNING_STATUSES = (JobStatus.PREPARING, JobStatus.TRAINING)


class Base(DeclarativeBase):
    pass


class Job(Base):
    """One fine-tuning job."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    """Unique per owner (``uq_jobs_owner_name``; jobs without an owner share one namespace)."""
    vertical: Mapped[str] = mapped_column(String(100), default="")
    base_model: Mapped[str] = mapped_column(String(300))
    training_config: Mapped[dict] = mapped_column(JSON)
    """The validated spec with every default filled in (``TrainingSpec.model_dump()``)."""
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED.value, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    training_examples: Mapped[int] = mapped_column(Integer, default=0)
    """Examples processed so far (the latest step's ``examples_seen``)."""
    dataset_examples: Mapped[int] = mapped_column(Integer, default=0)
    """Records in the data the job trains on (from the worker's ``data`` line)."""
    training_debates: Mapped[int] = mapped_column(Integer, default=0)
    """Distinct debates those records come from."""
    final_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    start_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """When StartJob was accepted; queued jobs with it set wait for a slot, oldest first."""
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The worker's process id (and process group) while it runs."""
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    """The sequence number of the job's newest event."""
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    """The name of the API key that created it (``services.auth``); None with no keys or a service token."""
    worker_attempt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Executor "ray": the id of the job's current launch on the cluster (its worker's lines carry it)."""
    worker_seq: Mapped[int] = mapped_column(Integer, default=0)
    """Executor "ray": the last line of that launch the trainer handled (stored with the line's event, so a
    line resent after a dropped connection or a trainer restart is skipped, never recorded twice)."""

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)

    __table_args__ = (Index("ix_jobs_created_at", "created_at"),
                      UniqueConstraint("owner", "name", name="uq_jobs_owner_name"))


class JobEvent(Base):
    """One event of a job's log."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), ForeignKey("jobs.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (UniqueConstraint("job_id", "sequence", name="uq_job_events_job_sequence"),)
