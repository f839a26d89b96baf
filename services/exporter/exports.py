"""The exporters: SFT, DPO and gauntlet records from the debate store, as batches in a stable order, plus
JSONL files in the export directory and the statistics.

Batches come from one streamed query per export (see ``store.py``), so memory stays flat however many records
an export holds. Records are plain tuples/dicts here; protobuf exists only in ``service.py``.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from services.common.errors import FieldViolation, InvalidArgument
from services.exporter.formats import SFT_INSTRUCTION
from services.exporter.store import DebateFilter, DebateStore

FORMATS = ("sft", "dpo", "gauntlet")
SPLITS = ("train", "heldout", "all")
BATCH = 64
"""Records per batch read and streamed (the default of ``ExporterSettings.export_batch``)."""


@dataclass(frozen=True)
class ExportFilter:
    """The filters of an export. Which apply depends on the format: ``min_confidence`` (SFT),
    ``min_confidence_diff`` (DPO), ``vertical`` and ``split`` (SFT, DPO), ``attack_type`` and ``min_severity``
    (gauntlet), ``limit`` (all)."""

    min_confidence: float | None = None
    min_confidence_diff: float | None = None
    limit: int | None = None
    vertical: str = ""
    split: str = "all"
    attack_type: str = ""
    min_severity: float | None = None
    persona: str = ""

    def validated(self) -> ExportFilter:
        """Checks every filter, naming each bad one; returns the filter normalised (vertical lower-case)."""
        bad: list[FieldViolation] = []

        def in_range(name: str, value: float | None, lo: float, hi: float) -> None:
            if value is not None and not (lo <= value <= hi):  # also refuses NaN
                bad.append(FieldViolation(name, f"must be between {lo:g} and {hi:g}, got {value!r}"))

        in_range("min_confidence", self.min_confidence, 0, 1)
        in_range("min_confidence_diff", self.min_confidence_diff, 0, 1)
        in_range("min_severity", self.min_severity, 0, 10)
        if self.limit is not None and self.limit < 1:
            bad.append(FieldViolation("limit", f"must be at least 1, got {self.limit}"))
        if self.split not in SPLITS:
            bad.append(FieldViolation("split", f"must be one of {', '.join(SPLITS)}, got {self.split!r}"))
        if bad:
            raise InvalidArgument(bad)
        return ExportFilter(self.min_confidence, self.min_confidence_diff, self.limit,
                            self.vertical.strip().lower(), self.split, self.attack_type.strip(), self.min_severity,
                            self.persona.strip())

    @property
    def debates(self) -> DebateFilter:
        return DebateFilter(self.vertical, self.split)


class Exporter:
    """The export logic over one store and one export directory."""

    def __init__(self, store: DebateStore, export_dir: Path, batch: int = BATCH) -> None:
        self.store = store
        self.export_dir = Path(export_dir)
        self.batch = batch

    # Each returns a generator after validating the filter, so a bad filter is an error before any record.

    def sft_rows(self, f: ExportFilter) -> Iterator[list[tuple]]:
        """Batches of ``(debate_id, task, final_answer, consensus_confidence, rounds, vertical)``."""
        f = f.validated()
        return self.store.sft_rows(f.debates, f.min_confidence, f.limit, self.batch)

    def dpo_rows(self, f: ExportFilter) -> Iterator[list[tuple]]:
        """Batches of ``(debate_id, losing_agent, task, chosen, rejected, confidence_diff, vertical)``."""
        f = f.validated()
        return self.store.dpo_rows(f.debates, f.min_confidence_diff, f.limit, self.batch)

    def gauntlet_rows(self, f: ExportFilter) -> Iterator[list[tuple]]:
        """Batches of ``(run_id, prompt, response, attack_type, success, findings)``."""
        f = f.validated()
        return self.store.gauntlet_rows(f.attack_type, f.min_severity, f.limit, self.batch, persona=f.persona)

    def records(self, fmt: str, f: ExportFilter) -> Iterator[list[dict]]:
        """Pages of export records as the JSON objects of the user guide."""
        if fmt == "sft":
            for page in self.sft_rows(f):
                yield [sft_record(r) for r in page]
        elif fmt == "dpo":
            for page in self.dpo_rows(f):
                yield [dpo_record(r) for r in page]
        elif fmt == "gauntlet":
            for page in self.gauntlet_rows(f):
                yield [gauntlet_record(r) for r in page]
        else:
            raise InvalidArgument(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format")

    # --- files --------------------------------------------------------------------------------------------

    def write(self, fmt: str, f: ExportFilter) -> tuple[ExportedFile, int]:
        """Writes one export as a JSONL file into the export directory; returns the file and its record count.
        The file appears complete or not at all (written under a temporary name, then renamed)."""
        if fmt not in FORMATS:
            raise InvalidArgument(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
        f = f.validated()
        pages = self.records(fmt, f)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        name = f"{fmt}_export_{now:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}.jsonl"
        count = 0
        fd, tmp = tempfile.mkstemp(prefix=".writing-", suffix=".jsonl", dir=self.export_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                for page in pages:
                    out.write(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in page))
                    count += len(page)
            os.replace(tmp, self.export_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return describe_file(self.export_dir / name), count

    def files(self) -> list[ExportedFile]:
        """The JSONL files of the export directory, newest first."""
        if not self.export_dir.is_dir():
            return []
        out = [describe_file(p) for p in self.export_dir.glob("*.jsonl") if p.is_file() and not p.name.startswith(".")]
        return sorted(out, key=lambda e: (e.created_at, e.name), reverse=True)

    def stats(self) -> ExportStats:
        per_vertical = self.store.debates_per_vertical()
        return ExportStats(
            available_exporters=list(FORMATS),
            export_directory=str(self.export_dir.resolve()),
            exported_files=self.files(),
            sft_available=self.store.sft_available(),
            debates_per_vertical=per_vertical,
            total_debates=sum(per_vertical.values()),
            total_gauntlet_runs=self.store.count_gauntlet_runs(),
        )


@dataclass(frozen=True)
class ExportedFile:
    name: str
    size_bytes: int
    created_at: datetime


@dataclass
class ExportStats:
    available_exporters: list[str]
    export_directory: str
    exported_files: list[ExportedFile]
    sft_available: bool
    debates_per_vertical: dict[str, int] = field(default_factory=dict)
    total_debates: int = 0
    total_gauntlet_runs: int = 0


def describe_file(path: Path) -> ExportedFile:
    st = path.stat()
    return ExportedFile(path.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))




# The record shapes of the user guide, built from store rows (also used by the gateway-independent file path).
def sft_record(r: tuple) -> dict:
    return {"instruction": SFT_INSTRUCTION, "input": r[1], "output": r[2],
            "metadata": {"debate_id": r[0], "consensus_confidence": r[3], "rounds": r[4], "vertical": r[5]}}


def dpo_record(r: tuple) -> dict:
    return {"prompt": r[2], "chosen": r[3], "rejected": r[4],
            "metadata": {"debate_id": r[0], "confidence_diff": round(r[5], 6), "vertical": r[6]}}


def gauntlet_record(r: tuple) -> dict:
    return {"prompt": r[1], "response": r[2], "attack_type": r[3], "success": bool(r[4]), "findings": list(r[5])}
