"""The debate store's tables (SQLAlchemy 2 declarative).

A debate row carries its consensus inline (one per debate); proposals, critiques and votes are child rows.
``debate_agents`` is derived at import time (each agent's final round and vote share) so that the DPO export is
one indexed join instead of a per-debate computation. The held-out split is stored too (it is a pure function
of the id, see ``split_of``), so filtering by split is an indexed column comparison on any database.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class JSONList(TypeDecorator):
    """A list of strings stored as JSON text, (de)serialised with orjson: the stdlib json that SQLAlchemy's JSON
    type uses was the largest cost of a bulk import. Never queried inside, so plain text on every database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value, dialect):
        return None if value is None else orjson.loads(value)


class Base(DeclarativeBase):
    pass


ID_LEN = 200
NAME_LEN = 100


class Debate(Base):
    __tablename__ = "debates"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    task: Mapped[str] = mapped_column(Text)
    vertical: Mapped[str] = mapped_column(String(NAME_LEN), index=True)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    split: Mapped[str] = mapped_column(String(16), index=True)
    """"train" or "heldout" (20%, deterministic by id)."""
    num_rounds: Mapped[int] = mapped_column(Integer)
    consensus_reached: Mapped[bool] = mapped_column(Boolean)
    final_answer: Mapped[str] = mapped_column(Text)
    consensus_confidence: Mapped[float] = mapped_column(Float)
    winner: Mapped[str] = mapped_column(String(NAME_LEN))
    dissenting_views: Mapped[list] = mapped_column(JSONList)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Proposal(Base):
    __tablename__ = "proposals"

    debate_id: Mapped[str] = mapped_column(ForeignKey("debates.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    content: Mapped[str] = mapped_column(Text)


class Critique(Base):
    __tablename__ = "critiques"

    debate_id: Mapped[str] = mapped_column(ForeignKey("debates.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Order of the critique within its debate (0-based)."""
    round: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(NAME_LEN))
    target_agent: Mapped[str] = mapped_column(String(NAME_LEN))
    issues: Mapped[list] = mapped_column(JSONList)
    suggestions: Mapped[list] = mapped_column(JSONList)
    severity: Mapped[float] = mapped_column(Float)


class Vote(Base):
    __tablename__ = "votes"

    debate_id: Mapped[str] = mapped_column(ForeignKey("debates.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent: Mapped[str] = mapped_column(String(NAME_LEN))
    choice: Mapped[str] = mapped_column(String(NAME_LEN))
    confidence: Mapped[float] = mapped_column(Float)


class DebateAgent(Base):
    """Derived per agent at import: the round of its final proposal and its (confidence-weighted) vote share."""

    __tablename__ = "debate_agents"

    debate_id: Mapped[str] = mapped_column(ForeignKey("debates.id", ondelete="CASCADE"), primary_key=True)
    agent: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    final_round: Mapped[int] = mapped_column(Integer)
    vote_share: Mapped[float] = mapped_column(Float)
    is_winner: Mapped[bool] = mapped_column(Boolean)


class GauntletRun(Base):
    __tablename__ = "gauntlet_runs"
    __table_args__ = (Index("ix_gauntlet_runs_attack_type", "attack_type"),)

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    attack_type: Mapped[str] = mapped_column(String(NAME_LEN))
    severity: Mapped[float] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean)
    findings: Mapped[list] = mapped_column(JSONList)
    persona: Mapped[str] = mapped_column(String(NAME_LEN))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
