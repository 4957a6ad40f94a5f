"""Calibration of confidence and time on task: closed-form cases."""

from __future__ import annotations

import io
import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from annotations.analysis import (
    analyze,
    calibration,
    calibration_table,
    confidence_forecast,
    load_responses_csv,
    rt_summary,
    time_on_task,
)
from annotations.analysis.plots import reliability_plot_svg


def test_forecast_mapping_without_candidates_is_the_documented_fallback() -> None:
    assert list(confidence_forecast([1, 2, 3, 4, 5])) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert list(confidence_forecast([1, 3, 5], [np.nan, 0, np.nan])) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 10])
def test_forecast_is_chance_at_confidence_1_and_certainty_at_5(k: int) -> None:
    """Closed form f = 1/k + (c − 1)/4 · (1 − 1/k), checked with exact fractions."""
    got = confidence_forecast([1, 2, 3, 4, 5], k)
    for c, value in zip(range(1, 6), got):
        exact = Fraction(1, k) + Fraction(c - 1, 4) * (1 - Fraction(1, k))
        assert value == pytest.approx(float(exact), abs=1e-15)
    assert got[0] == pytest.approx(1 / k) and got[-1] == 1.0
    assert list(confidence_forecast([1, 2, 3, 4, 5], 4)) == [0.25, 0.4375, 0.625, 0.8125, 1.0]


def test_calibration_table_with_candidates_hand_computed() -> None:
    # forecasts: c1 k4 → .25, c5 k4 → 1, c3 k2 → .75, c3 k unknown → .5; outcomes 0, 1, 1, 0
    # squared errors .0625, 0, .0625, .25 → Brier .09375; mean forecast 2.5/4
    table = calibration_table(
        confidence=[1, 5, 3, 3], correct=[False, True, True, False], n_candidates=[4, 4, 2, np.nan]
    )
    assert (table["n"], table["accuracy"], table["mean_forecast"], table["brier"]) == (4, 0.5, 0.625, 0.09375)
    by_level = {level["confidence"]: (level["forecast"], level["n"]) for level in table["levels"]}
    # level 3 holds k = 2 and unknown k: its mean forecast; empty levels have none (k varies)
    assert by_level == {1: (0.25, 1), 2: (None, 0), 3: (0.625, 2), 4: (None, 0), 5: (1.0, 1)}
    single = calibration_table(confidence=[1, 1], correct=[True, False], n_candidates=[4, 4])
    assert [level["forecast"] for level in single["levels"]] == [0.25, 0.4375, 0.625, 0.8125, 1.0]
    # a guesser at chance with k = 4 and confidence 1 is perfectly calibrated in expectation
    assert single["brier"] == 0.5 * 0.75**2 + 0.5 * 0.25**2


def test_calibration_reads_k_from_candidate_order_and_survives_the_csv(hand_df: pd.DataFrame) -> None:
    frame = hand_df.copy()
    orders = {"i1": ["cat", "dog"], "i2": ["dog", "cat", "bird", "fish"], "i3": ["cat", "dog", "cow"]}
    frame["candidate_order"] = [json.dumps(orders.get(item, [])) for item in frame["item"]]
    result = calibration(frame)
    # "none" test rows: (c, k, y) = (5,2,1), (1,4,0), (4,2,1), (3,4,1)
    forecasts = [1.0, 0.25, 0.5 + 0.75 * 0.5, 0.25 + 0.5 * 0.75]
    outcomes = [1, 0, 1, 1]
    expected = sum((f - y) ** 2 for f, y in zip(forecasts, outcomes)) / 4
    assert result["per_arm"]["none"]["brier"] == pytest.approx(expected, abs=1e-15)
    assert result["per_arm"]["none"]["mean_forecast"] == pytest.approx(sum(forecasts) / 4, abs=1e-15)
    # Python lists in the frame, JSON text from the CSV, any row order: the same numbers, exactly
    as_lists = hand_df.copy()
    as_lists["candidate_order"] = [orders.get(item, []) for item in as_lists["item"]]
    assert calibration(as_lists) == result
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    buffer.seek(0)
    assert calibration(load_responses_csv(buffer)) == result
    assert calibration(frame.sample(frac=1.0, random_state=4)) == result
    assert analyze(frame, baseline="none", seed=1, n_resamples=20, n_permutations=20)["all"]["calibration"] == result
    svg = reliability_plot_svg(result)
    assert "Brier" in svg and svg == reliability_plot_svg(result)


def test_calibration_rejects_a_candidate_order_that_is_not_a_list(hand_df: pd.DataFrame) -> None:
    frame = hand_df.copy()
    frame["candidate_order"] = "cat|dog"
    with pytest.raises(ValueError, match="candidate_order"):
        calibration(frame)
    frame["candidate_order"] = None  # empty cells: unknown k, the fallback
    assert calibration(frame) == calibration(hand_df)


def test_calibration_table_hand_computed() -> None:
    table = calibration_table(confidence=[1, 5, 3, 3], correct=[False, True, True, False])
    # forecasts 0, 1, .5, .5 against 0, 1, 1, 0: squared errors 0, 0, .25, .25
    assert table["brier"] == 0.125
    assert (table["n"], table["accuracy"], table["mean_forecast"]) == (4, 0.5, 0.5)
    by_level = {level["confidence"]: (level["n"], level["accuracy"]) for level in table["levels"]}
    assert by_level == {1: (1, 0.0), 2: (0, None), 3: (2, 0.5), 4: (0, None), 5: (1, 1.0)}


def test_calibration_per_arm(hand_df: pd.DataFrame) -> None:
    result = calibration(hand_df)
    # "none" test rows: confidence 5, 1, 4, 3 with correct 1, 0, 1, 1:
    # squared errors 0, 0, 0.0625, 0.25 -> Brier 0.078125 (pretest and learning rows ignored)
    assert result["per_arm"]["none"]["brier"] == 0.078125
    assert result["per_arm"]["none"]["n"] == 4
    assert result["pooled"]["n"] == 8


def test_rt_summary_hand_computed() -> None:
    assert rt_summary([1000, 2000, 3000, 4000]) == {
        "n": 4,
        "median_rt_ms": 2500.0,
        "q1_rt_ms": 1750.0,
        "q3_rt_ms": 3250.0,
        "iqr_rt_ms": 1500.0,
    }
    assert rt_summary([])["median_rt_ms"] is None


def test_time_on_task_per_arm(hand_df: pd.DataFrame) -> None:
    result = time_on_task(hand_df)
    assert result["per_arm"]["none"]["median_rt_ms"] == 2500.0
    assert result["per_arm"]["expl"]["median_rt_ms"] == 3000.0
    assert result["per_arm"]["expl"]["iqr_rt_ms"] == pytest.approx(1500.0)
    assert result["pooled"]["n"] == 8
