"""Persistence of the debate store behind a small interface: batch writes for the importer, keyset-paginated
reads for the exporters, counts for the stats.

Reads use SQLAlchemy Core (no ORM object per row): each export is one query whose rows are fetched a batch at a
time from the open cursor (``stream_results``: a server-side cursor on PostgreSQL), so memory stays flat for
any size, and the order is stable and duplicate-free because it is one snapshot. Nothing is SQLite-specific.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, delete, func, insert, select

from services.common.db import Database, migrate
from services.exporter import models as m
from services.exporter.importer import DebateRows, GauntletRows

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

D = m.Debate.__table__
P = m.Proposal.__table__
C = m.Critique.__table__
V = m.Vote.__table__
A = m.DebateAgent.__table__
G = m.GauntletRun.__table__
_CHILDREN = (P, C, V, A)


@dataclass(frozen=True)
class DebateFilter:
    """Which debates an export reads. ``split``: "train", "heldout" or "all"."""

    vertical: str = ""
    split: str = "all"


class DebateStore:
    """The debate store on one SQLAlchemy URL; ``migrate()`` brings its schema to the newest revision."""

    def __init__(self, url: str, run_migrations: bool = True) -> None:
        self.db = Database(url)  # first: it makes the folder of a SQLite file
        if run_migrations:
            # Alembic announces each of its plugins at INFO on every start; the migrations themselves stay logged.
            logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
            migrate(url, MIGRATIONS)

    def close(self) -> None:
        self.db.dispose()

    # --- writes -------------------------------------------------------------------------------------------

    def write_records(self, records: list[DebateRows | GauntletRows]) -> int:
        """Writes validated records in one transaction, replacing those whose id exists; returns how many
        existed (were updated). All or nothing."""
        debates = [r for r in records if isinstance(r, DebateRows)]
        runs = [r for r in records if isinstance(r, GauntletRows)]
        updated = 0
        with self.db.engine.begin() as conn:
            if debates:
                ids = [d.id for d in debates]
                existing = set(conn.execute(select(D.c.id).where(D.c.id.in_(ids))).scalars())
                if existing:
                    # Children first: correct without relying on ON DELETE CASCADE being enforced.
                    for t in _CHILDREN:
                        conn.execute(delete(t).where(t.c.debate_id.in_(existing)))
                    conn.execute(delete(D).where(D.c.id.in_(existing)))
                    updated += len(existing)
                conn.execute(insert(D), [d.debate for d in debates])
                for table, rows in ((P, [x for d in debates for x in d.proposals]),
                                    (C, [x for d in debates for x in d.critiques]),
                                    (V, [x for d in debates for x in d.votes]),
                                    (A, [x for d in debates for x in d.agents])):
                    if rows:
                        conn.execute(insert(table), rows)
            if runs:
                ids = [r.id for r in runs]
                existing = set(conn.execute(select(G.c.id).where(G.c.id.in_(ids))).scalars())
                if existing:
                    conn.execute(delete(G).where(G.c.id.in_(existing)))
                    updated += len(existing)
                conn.execute(insert(G), [r.run for r in runs])
        return updated

    # --- reads --------------------------------------------------------------------------------------------

    @staticmethod
    def _debate_where(f: DebateFilter) -> list:
        where = []
        if f.vertical:
            where.append(D.c.vertical == f.vertical)
        if f.split in ("train", "heldout"):
            where.append(D.c.split == f.split)
        return where

    def _stream(self, q, batch: int) -> Iterator[list[tuple]]:
        """Runs one query and yields its rows ``batch`` at a time from the open cursor (a server-side cursor on
        PostgreSQL): one snapshot, so the order is stable and nothing repeats, with flat memory."""
        with self.db.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
            for part in result.partitions(batch):
                yield [tuple(r) for r in part]

    def sft_rows(self, f: DebateFilter, min_confidence: float | None, limit: int | None,
                 batch: int) -> Iterator[list[tuple]]:
        """SFT rows ordered by debate id, in batches:
        ``(debate_id, task, final_answer, consensus_confidence, num_rounds, vertical)``."""
        where = [D.c.consensus_reached.is_(True), *self._debate_where(f)]
        if min_confidence is not None:
            where.append(D.c.consensus_confidence >= min_confidence)
        q = (select(D.c.id, D.c.task, D.c.final_answer, D.c.consensus_confidence, D.c.num_rounds, D.c.vertical)
             .where(*where).order_by(D.c.id).limit(limit))
        return self._stream(q, batch)

    def dpo_rows(self, f: DebateFilter, min_diff: float | None, limit: int | None,
                 batch: int) -> Iterator[list[tuple]]:
        """DPO rows ordered by debate id then losing agent, in batches:
        ``(debate_id, losing_agent, task, chosen, rejected, confidence_diff, vertical)``.

        chosen = the winner's proposal of its last round, rejected = each other agent's proposal of its last
        round, confidence_diff = winner's vote share - that agent's vote share (both from ``debate_agents``)."""
        W, L, WP, LP = A.alias("w"), A.alias("l"), P.alias("wp"), P.alias("lp")
        diff = W.c.vote_share - L.c.vote_share
        where = [D.c.consensus_reached.is_(True), *self._debate_where(f)]
        if min_diff is not None:
            where.append(diff >= min_diff)
        q = (
            select(D.c.id, L.c.agent, D.c.task, WP.c.content, LP.c.content, diff.label("confidence_diff"),
                   D.c.vertical)
            .select_from(D)
            .join(W, and_(W.c.debate_id == D.c.id, W.c.agent == D.c.winner))
            .join(WP, and_(WP.c.debate_id == D.c.id, WP.c.agent == W.c.agent, WP.c.round == W.c.final_round))
            .join(L, and_(L.c.debate_id == D.c.id, L.c.agent != D.c.winner))
            .join(LP, and_(LP.c.debate_id == D.c.id, LP.c.agent == L.c.agent, LP.c.round == L.c.final_round))
            .where(*where)
            .order_by(D.c.id, L.c.agent)
            .limit(limit)
        )
        return self._stream(q, batch)

    def gauntlet_rows(self, attack_type: str, min_severity: float | None, limit: int | None,
                      batch: int, persona: str = "") -> Iterator[list[tuple]]:
        """Gauntlet rows ordered by run id, in batches: ``(id, prompt, response, attack_type, success, findings)``."""
        where = []
        if attack_type:
            where.append(G.c.attack_type == attack_type)
        if min_severity is not None:
            where.append(G.c.severity >= min_severity)
        if persona:
            where.append(G.c.persona == persona)
        q = (select(G.c.id, G.c.prompt, G.c.response, G.c.attack_type, G.c.success, G.c.findings)
             .where(*where).order_by(G.c.id).limit(limit))
        return self._stream(q, batch)

    # --- counts -------------------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        with self.db.engine.connect() as conn:
            return (conn.execute(select(D.c.id).limit(1)).first() is None
                    and conn.execute(select(G.c.id).limit(1)).first() is None)

    def debates_per_vertical(self) -> dict[str, int]:
        with self.db.engine.connect() as conn:
            return {v: n for v, n in conn.execute(select(D.c.vertical, func.count()).group_by(D.c.vertical))}

    def count_gauntlet_runs(self) -> int:
        with self.db.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(G)).scalar_one()

    def sft_available(self) -> bool:
        with self.db.engine.connect() as conn:
            return conn.execute(select(D.c.id).where(D.c.consensus_reached.is_(True)).limit(1)).first() is not None
