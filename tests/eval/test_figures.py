"""The evaluation's arithmetic: Elo from a win rate (with its clamp), matches with draws, preference accuracy,
and the capped, vertical-balanced selection of held-out records."""

from __future__ import annotations

import math

import pytest

from services.trainer.worker.evaluate import ELO_MAX, ELO_MIN, elo_from_win_rate, play_matches, preference_accuracy
from services.trainer.worker.sources import balanced_take


@pytest.mark.parametrize("w, elo", [
    (0.5, 1500.0),
    (0.75, 1500 + 400 * math.log10(3)),    # 1690.8: odds 3:1
    (0.25, 1500 - 400 * math.log10(3)),    # symmetric below 1500
    (10 / 11, 1900.0),                       # odds 10:1 -> +400
    (1 / 11, 1100.0),
    (0.95, 2000.0),                          # +511 before the clamp
    (0.05, 1000.0),
    (1.0, ELO_MAX),                          # no finite rating: the clamp
    (0.0, ELO_MIN),
])
def test_elo_from_win_rate(w, elo):
    assert elo_from_win_rate(w) == pytest.approx(elo, abs=1e-6)


def test_elo_without_matches_is_absent_not_1500():
    assert elo_from_win_rate(None) is None
    assert elo_from_win_rate(float("nan")) is None


def test_elo_is_monotonic_and_within_the_clamp():
    values = [elo_from_win_rate(i / 100) for i in range(101)]
    assert values == sorted(values)
    assert all(ELO_MIN <= v <= ELO_MAX for v in values)


def test_matches_count_wins_losses_and_half_draws():
    adapter = [0.50, 0.10, -0.20, 0.3000, 0.3005]
    base = [0.10, 0.40, -0.20, 0.3004, 0.3000]
    games = play_matches(adapter, base, tolerance=1e-3)
    # +0.4 win, -0.3 loss, equal draw, -0.0004 and +0.0005 within the tolerance: draws
    assert (games["wins"], games["losses"], games["draws"], games["matches"]) == (1, 1, 3, 5)
    assert games["win_rate"] == pytest.approx((1 + 1.5) / 5)


def test_a_model_against_itself_draws_every_match():
    margins = [0.3, -0.1, 0.0, 2.5]
    games = play_matches(margins, list(margins), tolerance=0.0)
    assert games["draws"] == 4 and games["win_rate"] == 0.5
    assert elo_from_win_rate(games["win_rate"]) == 1500.0


def test_no_matches():
    games = play_matches([], [], tolerance=1e-3)
    assert games["matches"] == 0 and games["win_rate"] is None


def test_matches_need_the_same_pairs():
    with pytest.raises(ValueError):
        play_matches([0.1, 0.2], [0.1], tolerance=0.0)


def test_preference_accuracy_is_strict():
    assert preference_accuracy([1.0, 0.0, -1.0, 2.0], [0.5, 0.0, 0.0, 1.0]) == 0.5  # a tie is not a win
    assert preference_accuracy([], []) is None


def _rec(v: str, i: int) -> dict:
    return {"id": f"{v}-{i}", "metadata": {"vertical": v}}


def test_balanced_take_round_robins_across_verticals_in_order():
    records = [_rec("legal", i) for i in range(10)] + [_rec("code", i) for i in range(2)] + \
              [_rec("medical", i) for i in range(5)]
    taken = balanced_take(records, 7)
    assert [r["id"] for r in taken] == ["code-0", "legal-0", "medical-0", "code-1", "legal-1", "medical-1",
                                        "legal-2"]
    assert balanced_take(records, 100) == records
    assert balanced_take(records, 0) == []


def test_evaluation_off_or_capped_at_zero_is_skipped_with_the_reason():
    from services.trainer.worker.evaluate import EvalSettings, evaluate
    from services.trainer.worker.sources import load_heldout

    held = load_heldout(None, None, EvalSettings(enabled=False))
    assert held.skipped.startswith("evaluation disabled") and not held.pairs
    held = load_heldout(None, None, EvalSettings(max_sft_records=0, max_pairs=0))
    assert "capped at 0" in held.skipped
    assert evaluate(None, None, None, held, None) == {"evaluation": {"skipped": held.skipped}}
