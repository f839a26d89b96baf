"""Deployments: a completed job's adapter served under a model name, one row each in ``deployments``.

The table is created by the migration ``0002_deployments``; the rows survive a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Database
from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.trainer.orm import Base, UTCDateTime, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")


class DeploymentRow(Base):
    """One deployment."""

    __tablename__ = "deployments"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    base_model: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class Deployment:
    name: str
    job_id: str
    base_model: str
    created_at: datetime


def _plain(row: DeploymentRow) -> Deployment:
    return Deployment(row.name, row.job_id, row.base_model, row.created_at)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidArgument("must be 1 to 64 letters, digits or '.-_:/' starting with a letter or digit",
                              field="name")
    return name


class DeploymentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, name: str, job_id: str, base_model: str) -> Deployment:
        with self.db.session("deployment") as s:
            if s.get(DeploymentRow, name) is not None:
                raise AlreadyExists(f"a deployment named {name!r} already exists")
            row = DeploymentRow(name=name, job_id=job_id, base_model=base_model, created_at=utcnow())
            s.add(row)
            s.flush()
            return _plain(row)

    def get(self, name: str) -> Deployment | None:
        with self.db.session() as s:
            row = s.get(DeploymentRow, name)
            return _plain(row) if row is not None else None

    def remove(self, name: str) -> Deployment:
        with self.db.session() as s:
            row = s.get(DeploymentRow, name)
            if row is None:
                raise NotFound(f"no deployment named {name!r}")
            out = _plain(row)
            s.delete(row)
            return out

    def list(self, job_id: str = "") -> list[Deployment]:
        query = select(DeploymentRow).order_by(DeploymentRow.name)
        if job_id:
            query = query.where(DeploymentRow.job_id == job_id)
        with self.db.session() as s:
            return [_plain(r) for r in s.scalars(query)]
