"""Fixtures of the speed-correctness tests: the tiny random Llama (built once per session) and small SFT/DPO
data. These tests check that what makes training fast does not change what is learned; the speed itself is
measured by ``benchmarks/train_bench.py``, never asserted here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.support.tiny_model import build_tiny_model

WORDS = ("the contract court clause liability party agreement statute appeal judge risk evidence claim "
         "patient dose code test market answer reason because therefore however").split()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models"))


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def sft_records(n: int, seed: int = 0) -> list[dict]:
    """SFT records of varied length (so batches need padding)."""
    rng = random.Random(seed)
    return [{"instruction": "Answer the question the debate settled.", "input": _text(rng, 4, 40) + "?",
             "output": _text(rng, 3, 40) + ".",
             "metadata": {"debate_id": f"debate-{i:03d}", "consensus_confidence": 0.9, "rounds": 2,
                          "vertical": "legal"}} for i in range(n)]


def dpo_pairs(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": _text(rng, 4, 20) + "?", "chosen": _text(rng, 5, 40) + ".", "rejected": _text(rng, 5, 40) + "!",
             "metadata": {"debate_id": f"debate-{i:03d}", "confidence_diff": 0.5, "vertical": "legal"}}
            for i in range(n)]


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory) -> Path:
    """A folder holding ``sft.jsonl`` and ``dpo.jsonl`` as the benchmark's ``--data-dir`` expects."""
    folder = tmp_path_factory.mktemp("bench-data")
    (folder / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_records(24)), encoding="utf-8")
    (folder / "dpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dpo_pairs(16)), encoding="utf-8")
    return folder
