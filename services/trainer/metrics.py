"""A completed job's metrics: the counts and final loss of the job row, the rest as the worker's
``metrics.json`` has it (absent stays absent, a bad value reads as absent)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from services.trainer.orm import Job, JobStatus
from services.trainer.protocol import float_map, number


@dataclass
class JobMetrics:
    """A completed job's metrics: counts and final loss from the job, the rest as ``metrics.json`` has it
    (absent stays absent)."""

    job_id: str
    status: JobStatus
    training_data_examples: int
    training_data_debates: int
    final_loss: float | None
    elo_rating: float | None = None
    win_rate: float | None = None
    vertical_accuracy: dict[str, float] = field(default_factory=dict)
    adapter: dict | None = None
    base: dict | None = None
    eval_matches: int = 0
    eval_sft_records: int = 0
    eval_dpo_pairs: int = 0


def _evaluation(value) -> dict | None:
    """One model's figures (``base`` or ``adapter``)."""
    if not isinstance(value, dict):
        return None
    out = {k: number(value.get(k)) for k in ("heldout_loss", "perplexity", "preference_accuracy")}
    out["vertical_accuracy"] = float_map(value.get("vertical_accuracy"))
    return out


def read_metrics_file(path: Path) -> dict:
    """The JSON object in ``metrics.json``; empty when it is missing, unreadable or not an object."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def job_metrics(job: Job, metrics_file: Path) -> JobMetrics:
    raw = read_metrics_file(metrics_file)
    return JobMetrics(
        job_id=job.id,
        status=job.job_status,
        # The worker's metrics.json may name the counts either way; the job row has them too.
        training_data_examples=number(raw.get("training_data_examples", raw.get("training_examples")),
                                      job.dataset_examples, int),
        training_data_debates=number(raw.get("training_data_debates", raw.get("training_debates")),
                                     job.training_debates, int),
        final_loss=number(raw.get("final_loss"), job.final_loss),
        elo_rating=number(raw.get("elo_rating")),
        win_rate=number(raw.get("win_rate")),
        vertical_accuracy=float_map(raw.get("vertical_accuracy")),
        adapter=_evaluation(raw.get("adapter")),
        base=_evaluation(raw.get("base")),
        eval_matches=number(raw.get("eval_matches"), 0, int),
        eval_sft_records=number(raw.get("eval_sft_records"), 0, int),
        eval_dpo_pairs=number(raw.get("eval_dpo_pairs"), 0, int),
    )
