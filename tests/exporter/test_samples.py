"""The sample debates: the committed file is what the generator writes, it has the size and shape the issue
asks for, and its outcomes differ in content between winners and losers."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys

import pytest

from services.exporter.server import BUNDLED_SAMPLES
from tests.conftest import REPO


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    return [json.loads(line) for line in BUNDLED_SAMPLES.read_text().splitlines()]


def test_committed_file_is_the_generators_output(tmp_path):
    out = tmp_path / "debates.jsonl"
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_samples.py"), "--out", str(out)],
                   check=True, capture_output=True)
    assert out.read_bytes() == BUNDLED_SAMPLES.read_bytes(), "run scripts/generate_samples.py and commit"


def test_size_and_shape(samples):
    debates = [r for r in samples if r["type"] == "debate"]
    runs = [r for r in samples if r["type"] == "gauntlet"]
    assert len(debates) >= 600 and len(runs) >= 150
    per_vertical = collections.Counter(d["vertical"] for d in debates)
    assert set(per_vertical) == {"legal", "medical", "code", "finance", "general"}
    assert min(per_vertical.values()) >= 100
    assert len({d["task"] for d in debates}) == len(debates)
    for d in debates:
        agents = {p["agent"] for r in d["rounds"] for p in r["proposals"]}
        assert 3 <= len(agents) <= 4 and 2 <= len(d["rounds"]) <= 4
        assert d["critiques"] and len(d["votes"]) == len(agents)
    assert len({r["attack_type"] for r in runs}) >= 5
    assert 0 < sum(r["success"] for r in runs) < len(runs)


def test_proposals_are_short_enough_for_a_small_context(samples):
    words = [len(p["content"].split()) for d in samples if d["type"] == "debate"
             for r in d["rounds"] for p in r["proposals"]]
    assert min(words) >= 30 and max(words) <= 120
    assert sum(35 <= w for w in words) / len(words) > 0.99


def test_winners_and_losers_differ_in_content(samples):
    """The features the generator promises, measured on the final proposals: the winner gives a calibrated
    percentage and states an assumption; losers mostly do not, and some claim certainty."""
    calibrated = re.compile(r"\b(55|60|65|70|75|80|85)%")
    assumption = re.compile(r"assum|given that|basis that", re.I)
    certain = re.compile(r"100%|no doubt|guaranteed|cannot fail|zero doubts|beyond any question", re.I)
    win = collections.Counter()
    lose = collections.Counter()
    n_win = n_lose = 0
    for d in samples:
        if d["type"] != "debate" or not d["consensus"]["reached"]:
            continue
        for p in d["rounds"][-1]["proposals"]:
            text = p["content"]
            side = win if p["agent"] == d["consensus"]["winner"] else lose
            side["calibrated"] += bool(calibrated.search(text))
            side["assumption"] += bool(assumption.search(text))
            side["certain"] += bool(certain.search(text))
            if side is win:
                n_win += 1
                assert p["content"] == d["consensus"]["final_answer"]
            else:
                n_lose += 1
    assert win["calibrated"] == n_win and win["assumption"] == n_win and win["certain"] == 0
    assert lose["calibrated"] / n_lose < 0.4 and lose["assumption"] / n_lose < 0.5
    assert lose["certain"] / n_lose > 0.2


def test_the_wording_varies(samples):
    """No template dominates: the winners' opening words are spread over many variants."""
    openings = collections.Counter(" ".join(d["consensus"]["final_answer"].split()[:3])
                                   for d in samples if d["type"] == "debate" and d["consensus"]["reached"])
    assert len(openings) >= 40 and openings.most_common(1)[0][1] / sum(openings.values()) < 0.1
