"""Calibration of confidence and time on task: closed-form cases."""

from __future__ import annotations

import pandas as pd
import pytest

from annotations.analysis import calibration, calibration_table, confidence_forecast, rt_summary, time_on_task


def test_forecast_mapping() -> None:
    assert list(confidence_forecast([1, 2, 3, 4, 5])) == [0.0, 0.25, 0.5, 0.75, 1.0]


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
        "n": 4, "median_rt_ms": 2500.0, "q1_rt_ms": 1750.0, "q3_rt_ms": 3250.0, "iqr_rt_ms": 1500.0,
    }
    assert rt_summary([])["median_rt_ms"] is None


def test_time_on_task_per_arm(hand_df: pd.DataFrame) -> None:
    result = time_on_task(hand_df)
    assert result["per_arm"]["none"]["median_rt_ms"] == 2500.0
    assert result["per_arm"]["expl"]["median_rt_ms"] == 3000.0
    assert result["per_arm"]["expl"]["iqr_rt_ms"] == pytest.approx(1500.0)
    assert result["pooled"]["n"] == 8
