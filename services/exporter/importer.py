"""The one import path: every source (gRPC ImportDebates, REST via the gateway, the CLI) hands records to
``Importer``, which validates each one, writes good ones in chunks and reports the bad ones.

Validation is pure (no database access), so a rejected record never reaches the store; good records are written
in chunks of one transaction each, and if a chunk's transaction fails, its records are retried one by one so that
only the record at fault is rejected and nothing of it is half-written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from services.exporter.formats import DebateImport, GauntletImport

log = logging.getLogger(__name__)

HELDOUT_PERCENT = 20
MAX_REJECTIONS = 1000
"""Most rejections listed in one summary (all are counted)."""
CHUNK = 500


def split_of(debate_id: str) -> str:
    """"heldout" for 20% of debate ids, "train" for the rest: a pure function of the id (SHA-256), so the
    same debate lands in the same split on every machine and every re-import."""
    h = int.from_bytes(hashlib.sha256(debate_id.encode()).digest()[:8], "big")
    return "heldout" if h % 100 < HELDOUT_PERCENT else "train"


@dataclass(frozen=True)
class Rejection:
    """Why one record was rejected: its line (or 1-based position), the field (dotted path) and the reason."""

    line: int
    field: str
    reason: str


@dataclass
class ImportSummary:
    """What an import did."""

    imported: int = 0
    updated: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, r: Rejection) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS:
            self.rejections.append(r)


@dataclass
class DebateRows:
    """One validated debate as the rows the store writes."""

    id: str
    debate: dict
    proposals: list[dict]
    critiques: list[dict]
    votes: list[dict]
    agents: list[dict]


@dataclass
class GauntletRows:
    id: str
    run: dict


class RecordError(Exception):
    """A record failed validation; ``field`` is the dotted path, empty for the record as a whole."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def _pydantic_error(exc: ValidationError) -> RecordError:
    # The first error is the one reported: a record is rejected as a whole, and one clear reason beats a list.
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = err.get("msg", "invalid value")
    ctx = err.get("ctx") or {}
    if err.get("type") == "string_pattern_mismatch":
        msg = "must not contain whitespace" if ctx.get("pattern", "").startswith("^") else "must not be blank"
    elif err.get("type") == "missing":
        msg = "is required"
    elif err.get("type") == "string_too_short" and ctx.get("min_length") == 1:
        msg = "must not be empty"
    elif err.get("type") == "string_too_long":
        msg = f"too long: at most {ctx.get('max_length')} characters"
    elif err.get("type") == "literal_error" and loc == "type":
        msg = "must be 'debate' or 'gauntlet'"
    return RecordError(loc, msg)


def parse_json(text: str | bytes) -> Any:
    """Parses one JSONL line; a malformed line is a RecordError naming the position of the problem."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RecordError("", f"not valid JSON: {exc}") from None


def validate(obj: Any) -> DebateImport | GauntletImport:
    """Validates one import record (a parsed JSON object) against the import schema plus the cross-field rules."""
    if not isinstance(obj, dict):
        raise RecordError("", f"a record must be a JSON object, not {type(obj).__name__}")
    kind = obj.get("type", "debate")
    try:
        if kind == "debate":
            rec = DebateImport.model_validate(obj)
        elif kind == "gauntlet":
            return GauntletImport.model_validate(obj)
        else:
            raise RecordError("type", f"must be 'debate' or 'gauntlet', not {kind!r}")
    except ValidationError as exc:
        raise _pydantic_error(exc) from None
    _check_debate(rec)
    return rec


def _check_debate(d: DebateImport) -> None:
    """The rules a JSON Schema cannot express."""
    proposers: set[str] = set()
    numbers: set[int] = set()
    for ri, rnd in enumerate(d.rounds):
        number = rnd.number or ri + 1
        if number in numbers:
            raise RecordError(f"rounds.{ri}.number", f"round {number} appears twice")
        numbers.add(number)
        seen: set[str] = set()
        for pi, p in enumerate(rnd.proposals):
            if p.agent in seen:
                raise RecordError(f"rounds.{ri}.proposals.{pi}.agent",
                                  f"agent {p.agent!r} proposed twice in round {number}")
            seen.add(p.agent)
        proposers |= seen
    voters: set[str] = set()
    for vi, v in enumerate(d.votes):
        if v.agent in voters:
            raise RecordError(f"votes.{vi}.agent", f"agent {v.agent!r} voted twice")
        voters.add(v.agent)
        if v.choice not in proposers:
            raise RecordError(f"votes.{vi}.choice", f"{v.choice!r} made no proposal in this debate")
    for ci, c in enumerate(d.critiques):
        if c.target_agent not in proposers:
            raise RecordError(f"critiques.{ci}.target_agent", f"{c.target_agent!r} made no proposal in this debate")
        if c.round and c.round not in numbers:
            raise RecordError(f"critiques.{ci}.round", f"the debate has no round {c.round}")
    c = d.consensus
    if c is not None and c.reached:
        if not c.winner:
            raise RecordError("consensus.winner", "is required when consensus was reached")
        if c.winner not in proposers:
            raise RecordError("consensus.winner", f"{c.winner!r} made no proposal in this debate")
        if not c.final_answer.strip():
            raise RecordError("consensus.final_answer", "is required when consensus was reached")


def vote_shares(d: DebateImport) -> dict[str, float]:
    """Each agent's share of the votes, weighted by the voters' confidence (a plain count share when every vote
    has the same confidence; a count share too if every confidence is 0). Without votes, the winner's share is
    the consensus confidence given and everyone else's 0."""
    shares: dict[str, float] = {}
    if d.votes:
        total = sum(v.confidence for v in d.votes)
        for v in d.votes:
            w = v.confidence / total if total > 0 else 1 / len(d.votes)
            shares[v.choice] = shares.get(v.choice, 0.0) + w
    elif d.consensus is not None and d.consensus.reached and d.consensus.confidence is not None:
        shares[d.consensus.winner] = d.consensus.confidence
    return shares


def to_rows(d: DebateImport, now: datetime) -> DebateRows:
    """The store rows of one validated debate, with the derived split, final rounds and vote shares."""
    shares = vote_shares(d)
    c = d.consensus
    reached = bool(c and c.reached)
    winner = c.winner if reached else ""
    confidence = 0.0
    if c is not None:
        confidence = c.confidence if c.confidence is not None else round(shares.get(c.winner, 0.0), 6)
    proposals, final_round = [], {}
    for ri, rnd in enumerate(d.rounds):
        number = rnd.number or ri + 1
        for p in rnd.proposals:
            proposals.append({"debate_id": d.id, "round": number, "agent": p.agent, "content": p.content})
            final_round[p.agent] = max(number, final_round.get(p.agent, 0))
    created = d.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return DebateRows(
        id=d.id,
        debate={
            "id": d.id,
            "task": d.task,
            "vertical": d.vertical.strip().lower(),
            "created_at": created,
            "split": split_of(d.id),
            "num_rounds": len(d.rounds),
            "consensus_reached": reached,
            "final_answer": c.final_answer if c else "",
            "consensus_confidence": confidence,
            "winner": winner,
            "dissenting_views": list(c.dissenting_views) if c else [],
            "imported_at": now,
        },
        proposals=proposals,
        critiques=[
            {"debate_id": d.id, "position": i, "round": x.round, "agent": x.agent, "target_agent": x.target_agent,
             "issues": list(x.issues), "suggestions": list(x.suggestions), "severity": x.severity}
            for i, x in enumerate(d.critiques)
        ],
        votes=[
            {"debate_id": d.id, "position": i, "agent": v.agent, "choice": v.choice, "confidence": v.confidence}
            for i, v in enumerate(d.votes)
        ],
        agents=[
            {"debate_id": d.id, "agent": a, "final_round": r, "vote_share": shares.get(a, 0.0),
             "is_winner": a == winner}
            for a, r in final_round.items()
        ],
    )


def gauntlet_rows(g: GauntletImport, now: datetime) -> GauntletRows:
    return GauntletRows(
        id=g.id,
        run={"id": g.id, "prompt": g.prompt, "response": g.response, "attack_type": g.attack_type.strip(),
             "severity": g.severity, "success": g.success, "findings": list(g.findings), "persona": g.persona,
             "imported_at": now},
    )


class Importer:
    """Validates and writes a stream of records, chunk by chunk; ``add()`` each record then ``finish()``.

    Used by the gRPC servicer (one per ImportDebates stream), the CLI and the sample loader alike.
    A record whose id already appeared earlier in the same import is rejected (which one would win is
    ambiguous); an id already in the store is updated in place.
    """

    def __init__(self, store, chunk: int = CHUNK) -> None:
        self.store = store
        self.chunk = chunk
        self.summary = ImportSummary()
        self._pending: list[tuple[int, DebateRows | GauntletRows]] = []
        self._seen: dict[tuple[str, str], int] = {}
        self._position = 0

    def next_line(self, line: int | None) -> int:
        """The line to report for the next record: the caller's, or its 1-based position in the stream."""
        self._position += 1
        return line if line else self._position

    def add_json(self, text: str | bytes, line: int | None = None) -> None:
        """Adds one record given as JSON text (a JSONL line)."""
        n = self.next_line(line)
        try:
            self._accept(n, validate(parse_json(text)))
        except RecordError as exc:
            self.summary.reject(Rejection(n, exc.field, exc.reason))
        self._maybe_flush()

    def add_object(self, obj: Any, line: int | None = None) -> None:
        """Adds one record given as a parsed JSON object (or a dict built from a typed message)."""
        n = self.next_line(line)
        try:
            self._accept(n, validate(obj))
        except RecordError as exc:
            self.summary.reject(Rejection(n, exc.field, exc.reason))
        self._maybe_flush()

    def reject(self, line: int | None, field: str, reason: str) -> None:
        """Records a rejection decided by the caller (e.g. a request that carried no record)."""
        self.summary.reject(Rejection(self.next_line(line), field, reason))

    def _accept(self, n: int, rec: DebateImport | GauntletImport) -> None:
        kind = "debate" if isinstance(rec, DebateImport) else "gauntlet"
        first = self._seen.get((kind, rec.id))
        if first is not None:
            raise RecordError("id", f"duplicate id {rec.id!r}: already given at line {first} of this import")
        self._seen[(kind, rec.id)] = n
        now = datetime.now(UTC)
        self._pending.append((n, to_rows(rec, now) if kind == "debate" else gauntlet_rows(rec, now)))

    def _maybe_flush(self) -> None:
        if len(self._pending) >= self.chunk:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Writes the pending good records (one transaction; one per record if that fails)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            updated = self.store.write_records([rows for _, rows in pending])
        except Exception as exc:  # noqa: BLE001 - isolate the record at fault below
            log.warning("chunk of %d records failed (%s); writing them one by one", len(pending), exc)
            for n, rows in pending:
                try:
                    upd = self.store.write_records([rows])
                except Exception as one:  # noqa: BLE001 - reported as the record's rejection
                    log.warning("record at line %d not stored: %s", n, one)
                    self.summary.reject(Rejection(n, "", f"could not be stored: {type(one).__name__}"))
                    continue
                self._count(upd, 1)
            return
        self._count(updated, len(pending))

    def _count(self, updated: int, total: int) -> None:
        self.summary.updated += updated
        self.summary.imported += total - updated

    def finish(self) -> ImportSummary:
        self.flush()
        return self.summary


def import_lines(store, lines: Iterable[bytes | str]) -> ImportSummary:
    """Imports JSONL lines (blank lines skipped, line numbers counted from 1)."""
    imp = Importer(store)
    for i, line in enumerate(lines, start=1):
        if line.strip():
            imp.add_json(line, i)
    return imp.finish()
