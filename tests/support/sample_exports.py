"""The sample debates through an in-process exporter: a real store on a temporary SQLite file, the real import and
export code, the records as the exporter serves them (used by the benchmarks that train on the samples)."""

from __future__ import annotations

import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "services" / "exporter" / "samples" / "debates.jsonl"


def sample_records(*queries: tuple[str, dict]) -> list[list[dict]]:
    """For each ``(format, filter fields)`` query (e.g. ``("sft", {"split": "train", "limit": 8})``), the records the
    exporter returns for it over the sample debates, its pages flattened; one import serves every query."""
    from services.exporter.exports import Exporter, ExportFilter
    from services.exporter.importer import import_lines
    from services.exporter.store import DebateStore

    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        store = DebateStore(f"sqlite:///{tmp}/debates.db")
        try:
            with open(SAMPLES, "rb") as fh:
                import_lines(store, fh)
            exporter = Exporter(store, Path(tmp) / "exports")
            return [[r for page in exporter.records(fmt, ExportFilter(**fields)) for r in page]
                    for fmt, fields in queries]
        finally:
            store.close()
