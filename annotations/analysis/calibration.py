"""Calibration of participants' confidence against their simulation correctness.

The confidence rating ``c`` in 1–5 is read as the forecast probability ``f = (c − 1) / 4`` that the
participant's guess equals the model's prediction (1 → 0.0, 3 → 0.5, 5 → 1.0). This mapping is a
convention: the rating scale has no anchor in probabilities. Test-phase rows with a confidence and
a non-missing ``correct_simulation`` are used.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from .responses import responses_prepare

__all__ = ["CONFIDENCE_LEVELS", "calibration", "calibration_table", "confidence_forecast"]

CONFIDENCE_LEVELS: Final = (1, 2, 3, 4, 5)


def confidence_forecast(confidence: np.ndarray) -> np.ndarray:
    """Forecast probability of a correct simulation: ``(confidence − 1) / 4``."""
    return (np.asarray(confidence, dtype=np.float64) - 1.0) / 4.0


def calibration_table(*, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Calibration of one group of responses.

    Returns ``{"n", "accuracy", "mean_forecast", "brier", "levels"}`` where ``brier`` is the mean of
    ``(f − y)²`` with ``f = (confidence − 1)/4`` and ``y`` = 1 for a correct simulation, 0 otherwise
    (0 is perfect, 0.25 is a constant forecast of 0.5 on any data); ``levels`` lists, for each
    confidence 1–5, ``{"confidence", "forecast", "n", "accuracy"}`` (``accuracy`` = mean of ``y`` at
    that level, ``None`` when ``n == 0``). Undefined values are ``None``.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    forecast = confidence_forecast(conf)
    levels = []
    for level in CONFIDENCE_LEVELS:
        at = conf == level
        n = int(at.sum())
        levels.append(
            {
                "confidence": level,
                "forecast": float(confidence_forecast(np.array(level))),
                "n": n,
                "accuracy": float(y[at].mean()) if n else None,
            }
        )
    n = int(len(y))
    return {
        "n": n,
        "accuracy": float(y.mean()) if n else None,
        "mean_forecast": float(forecast.mean()) if n else None,
        "brier": float(((forecast - y) ** 2).mean()) if n else None,
        "levels": levels,
    }


def calibration(df: pd.DataFrame) -> dict:
    """Calibration per arm and pooled over arms (test phase).

    ``{"per_arm": {arm: table}, "pooled": table}`` with ``table`` as in :func:`calibration_table`.
    """
    return _calibration(responses_prepare(df))


def _calibration(prepared: pd.DataFrame) -> dict:
    rows = prepared[
        (prepared["phase"] == "test") & prepared["confidence"].notna() & prepared["correct_simulation"].notna()
    ]

    def table(group: pd.DataFrame) -> dict:
        return calibration_table(
            confidence=group["confidence"].to_numpy(dtype=np.float64),
            correct=group["correct_simulation"].to_numpy(dtype=bool),
        )
    return {
        "per_arm": {str(arm): table(group) for arm, group in rows.groupby("condition", sort=True)},
        "pooled": table(rows),
    }
