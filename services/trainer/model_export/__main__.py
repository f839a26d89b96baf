"""``python -m services.trainer.model_export JOB_DIR KIND``: one export of a completed job, in its own process.

KIND is ``merged``, ``gguf_f16`` or ``gguf_q8_0``. A GGUF export starts from ``export/merged/``, merging first
(and keeping that merged model) when it is not there yet. Every output is written under a ``.<name>.tmp`` name
and renamed when complete, so a killed export leaves nothing that looks finished.

Stdout carries one JSON object per line: ``{"type": "progress", "phase", "done", "total", "progress",
"message"}``, ``{"type": "warning", "message"}``, then ``{"type": "result", "files": [...], "checks": {...}}``
or ``{"type": "error", "message"}``. Exit codes: 0 after a result, 1 after an error, 2 for a wrong command line;
SIGTERM (a cancel) ends it at once.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path

from services.trainer.model_export import EXPORT_DIR, KINDS, MERGED_DIR


def gguf_file_name(job_name: str, job_id: str, qtype: str) -> str:
    """``<job name>-<qtype>.gguf`` with the name reduced to letters, digits, '.', '_' and '-'."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", job_name).strip(".-")[:100] or job_id
    return f"{safe}-{qtype}.gguf"


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run(job_dir: Path, kind: str) -> dict:
    from services.trainer.model_export.merge import JobFiles, merge

    files = JobFiles.load(job_dir)
    export_dir = job_dir / EXPORT_DIR
    merged_dir = export_dir / MERGED_DIR

    def warn(message: str) -> None:
        _emit({"type": "warning", "message": message})

    need_merge = kind == "merged" or not (merged_dir / "model.safetensors").is_file()
    # Shares of the whole: a GGUF export that must merge first spends its first half merging.
    merge_share = 1.0 if kind == "merged" else (0.5 if need_merge else 0.0)

    def progress(phase: str, done: int, total: int, message: str) -> None:
        frac = done / total if total else 1.0
        overall = frac * merge_share if phase == "merge" else merge_share + frac * (1 - merge_share)
        _emit({"type": "progress", "phase": phase, "done": done, "total": total,
               "progress": round(min(1.0, overall), 4), "message": message})

    checks: dict = {}
    out: list[str] = []
    if need_merge:
        checks["merged"] = merge(files, merged_dir, progress, warn)
        out += sorted(f"{EXPORT_DIR}/{MERGED_DIR}/{p.name}" for p in merged_dir.iterdir() if p.is_file())
    if kind != "merged":
        from services.trainer.model_export.gguf_export import write_gguf

        qtype = kind.removeprefix("gguf_")
        name = gguf_file_name(files.name, job_dir.name, qtype)
        checks[kind] = write_gguf(merged_dir, export_dir / name, qtype, files.name, progress)
        out.append(f"{EXPORT_DIR}/{name}")
    return {"files": out, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[1] not in KINDS:
        sys.stderr.write(f"usage: python -m services.trainer.model_export JOB_DIR {{{','.join(KINDS)}}}\n")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from services.trainer.model_export.merge import ExportError

    try:
        result = run(Path(args[0]), args[1])
    except ExportError as exc:
        _emit({"type": "error", "message": str(exc)})
        return 1
    except MemoryError:
        _emit({"type": "error", "message": "out of memory while exporting"})
        return 1
    except Exception as exc:
        traceback.print_exc()
        _emit({"type": "error", "message": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1
    _emit({"type": "result", **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
