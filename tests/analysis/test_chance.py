"""Chance as a per-item quantity (``annotations.analysis.chance``) and the power analysis's guessing
floor at each item's chance (``annotations.analysis.power``), against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from annotations.analysis import (
    analyze,
    chance_levels,
    chance_table,
    power_at,
    power_sample_size,
    simulated_accuracy_truth,
)
from annotations.analysis.power import _simulated_effect, _study_draws


def test_chance_table_hand_computed() -> None:
    # k = 2, 4, 4, 3 (and one unknown): chance (1/2 + 1/4 + 1/4 + 1/3) / 4 = 4/3 / 4 = 1/3;
    # right 1, 0, 1, 1 → accuracy 3/4; corrected Σ(y − c) / Σ(1 − c) = (3 − 4/3) / (4 − 4/3) = 5/8.
    table = chance_table(correct=[True, False, True, True, True], n_candidates=[2, 4, 4, 3, np.nan])
    assert (table["n"], table["n_unknown"]) == (4, 1)
    assert table["accuracy"] == 0.75
    assert table["chance"] == pytest.approx(1 / 3, abs=1e-15)
    assert table["above_chance"] == pytest.approx(0.75 - 1 / 3, abs=1e-15)
    assert table["chance_corrected"] == pytest.approx(5 / 8, abs=1e-15)
    assert table["candidates"] == {"2": 1, "3": 1, "4": 2}
    # one k for every answer: Cohen's (accuracy − 1/k) / (1 − 1/k)
    same = chance_table(correct=[True, True, False, False], n_candidates=[4, 4, 4, 4])
    assert same["chance_corrected"] == pytest.approx((0.5 - 0.25) / 0.75, abs=1e-15)
    empty = chance_table(correct=[True], n_candidates=[np.nan])
    assert empty["chance"] is None and empty["chance_corrected"] is None


def _frame() -> pd.DataFrame:
    """Two arms; yes/no items show 2 candidates, colour items 4; attention checks left out."""
    rows = []
    orders = {"yn": ["yes", "no"], "col": ["red", "green", "blue", "yellow"]}
    answers = [  # (arm, participant, item, right)
        ("none", "p1", "yn", True),
        ("none", "p1", "col", False),
        ("none", "p2", "yn", False),
        ("none", "p2", "col", True),
        ("ig", "p3", "yn", True),
        ("ig", "p3", "col", True),
        ("ig", "p4", "yn", True),
        ("ig", "p4", "col", False),
    ]
    for arm, participant, item, right in answers:
        model = orders[item][0]
        rows.append(
            {
                "study": "s",
                "condition": arm,
                "participant": participant,
                "item": item,
                "model_prediction": model,
                "gold_label": model,
                "guess": model if right else orders[item][1],
                "correct_simulation": right,
                "confidence": 3,
                "rt_ms": 1000,
                "created_at": "2026-01-01T00:00:00Z",
                "phase": "test",
                "candidate_order": json.dumps(orders[item]),
            }
        )
    rows.append(
        {**rows[0], "item": "check", "is_attention_check": True, "candidate_order": json.dumps(["a", "b", "c"])}
    )
    return pd.DataFrame(rows)


def test_chance_levels_per_arm_from_the_candidate_order() -> None:
    found = chance_levels(_frame())
    # each arm: two yes/no answers (1/2) and two colour answers (1/4): chance 3/8
    for arm, right in (("none", 2), ("ig", 3)):
        table = found["per_arm"][arm]
        assert table["chance"] == pytest.approx(3 / 8, abs=1e-15)
        assert table["accuracy"] == right / 4
        assert table["chance_corrected"] == pytest.approx((right - 1.5) / 2.5, abs=1e-15)
    assert found["pooled"]["n"] == 8  # the attention check is no test answer
    report = analyze(_frame(), baseline="none", seed=0, n_resamples=20, n_permutations=20, mixed_model=False)
    assert report["all"]["chance"] == found


def test_power_sets_the_logits_above_each_items_chance() -> None:
    """Without random effects and with chances 1/2 and 1/4 (mean 3/8), a baseline accuracy of
    11/16 is (11/16 − 3/8)/(1 − 3/8) = 1/2 above chance: β_0 = logit(1/2) = 0; the explained arm's
    25/32 is 13/20 above chance: β_0 + Δ = logit(13/20)."""
    common = dict(participant_sd=0.0, item_sd=0.0, n_items=20, items_per_participant=20, n_simulations=10)
    found = power_sample_size(
        baseline_accuracy=11 / 16, effect=25 / 32 - 11 / 16, chance=[0.5, 0.25], max_participants_per_arm=20, **common
    )
    assert found["chance"] == 0.375
    assert found["intercept"] == pytest.approx(0.0, abs=1e-9)
    assert found["logit_shift"] == pytest.approx(math.log(13 / 7), abs=1e-9)
    without = power_sample_size(baseline_accuracy=11 / 16, effect=0.1, max_participants_per_arm=20, **common)
    assert without["chance"] is None
    assert simulated_accuracy_truth(logit=without["intercept"], participant_sd=0.0, item_sd=0.0) == pytest.approx(
        11 / 16
    )


def test_a_participant_who_knows_nothing_is_right_at_each_items_chance() -> None:
    """Baseline logit −40 (knows nothing: right only by guessing), explained arm +40 (always
    right): the simulated effect is 1 − the baseline's accuracy, which is the mean chance of the
    simulated items (drawn from 1/2 and 1/4), within 5 standard errors over 300 × 40 answers."""
    chance = np.array([0.5, 0.25])
    draws = _study_draws(4, 0, n=300, n_items=40, items_per_participant=40, chance=chance)
    assert set(np.unique(draws["chance"])) == {0.25, 0.5}
    estimate, se, _ = _simulated_effect(
        draws, intercept=-40.0, shift=80.0, participant_sd=0.0, item_sd=0.0, items_per_participant=40
    )
    expected = float(draws["chance"].mean())
    assert abs((1.0 - estimate) - expected) < 5 * math.sqrt(expected * (1 - expected) / (300 * 40))
    same = _study_draws(4, 0, n=300, n_items=40, items_per_participant=40)
    assert all(np.array_equal(a, b) for a, b in zip(same["arms"][0], draws["arms"][0]))  # floor: its own stream


def test_a_baseline_at_or_below_chance_is_refused() -> None:
    with pytest.raises(ValueError, match=r"above chance \(0.500"):
        power_at(
            n_participants_per_arm=10,
            baseline_accuracy=0.5,
            effect=0.1,
            participant_sd=1.0,
            item_sd=1.0,
            n_items=10,
            items_per_participant=5,
            chance=[0.5],
        )
    with pytest.raises(ValueError, match="per-item chances in"):
        power_at(
            n_participants_per_arm=10,
            baseline_accuracy=0.6,
            effect=0.1,
            participant_sd=1.0,
            item_sd=1.0,
            n_items=10,
            items_per_participant=5,
            chance=[1.0],
        )
