"""Calibration of participants' confidence against their simulation correctness.

The confidence rating ``c`` in 1–5 is read as the forecast probability that the participant's
guess equals the model's prediction. With ``k`` candidate answers shown for the response, rating 1
("guessing") means chance, ``1/k``, and rating 5 means certainty::

    f(c, k) = 1/k + (c − 1)/4 · (1 − 1/k)

so with ``k = 4``: 1 → 0.25, 2 → 0.4375, 3 → 0.625, 4 → 0.8125, 5 → 1.0. ``k`` is the length of the
response's ``candidate_order`` (the labels in the order shown; a JSON list in the CSV export, see
:func:`~annotations.analysis.responses.responses_prepare`'s ``n_candidates``). Where it is not
known (no ``candidate_order`` column, an empty cell or an empty list), ``f = (c − 1)/4`` — the limit
``k → ∞`` (1 → 0.0, 3 → 0.5, 5 → 1.0). The mapping is a convention: the rating scale has no anchor in
probabilities. Test-phase rows with a confidence and a non-missing ``correct_simulation`` are used.

Sums run over the distinct ``(c, k)`` pairs in sorted order (counts times forecasts), so the
numbers do not depend on row order and the analysis of the CSV export matches the service's to
the last bit.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from .responses import responses_prepare

__all__ = ["CONFIDENCE_LEVELS", "calibration", "calibration_table", "confidence_forecast"]

CONFIDENCE_LEVELS: Final = (1, 2, 3, 4, 5)


def confidence_forecast(confidence: np.ndarray, n_candidates: np.ndarray | float | None = None) -> np.ndarray:
    """Forecast probability of a correct simulation, ``1/k + (c − 1)/4 · (1 − 1/k)``.

    Args:
        confidence: ratings ``c`` in 1–5, shape ``(n,)`` (or a scalar).
        n_candidates: ``k``, the number of candidates shown, broadcastable to ``confidence``;
            ``None``, NaN or a value < 1 means unknown, where the forecast is ``(c − 1)/4``.

    Returns float64 forecasts of ``confidence``'s shape.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    base = (conf - 1.0) / 4.0
    if n_candidates is None:
        return base
    k = np.broadcast_to(np.asarray(n_candidates, dtype=np.float64), conf.shape)
    known = np.isfinite(k) & (k >= 1)
    chance = np.divide(1.0, k, out=np.zeros(conf.shape), where=known)
    return np.where(known, chance + base * (1.0 - chance), base)


def calibration_table(*, confidence: np.ndarray, correct: np.ndarray, n_candidates: np.ndarray | None = None) -> dict:
    """Calibration of one group of responses.

    Args:
        confidence: ratings 1–5, shape ``(n,)``.
        correct: simulation correctness, shape ``(n,)`` (``y`` = 1 correct, 0 wrong).
        n_candidates: candidates shown per response ``k``, shape ``(n,)``, NaN where unknown;
            ``None``: unknown for all (see :func:`confidence_forecast`).

    Returns ``{"n", "accuracy", "mean_forecast", "brier", "levels"}`` where ``brier`` is the mean of
    ``(f − y)²`` with ``f = f(c, k)`` (module doc; 0 is perfect); ``levels`` lists, for each
    confidence 1–5, ``{"confidence", "forecast", "n", "accuracy"}``: ``forecast`` is the mean
    forecast of the level's responses (for a level without responses, ``f(c, k)`` when the group
    has a single ``k``, else ``None``), ``accuracy`` the mean of ``y`` at that level (``None`` when
    ``n == 0``). Undefined values are ``None``.
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    y = np.asarray(correct, dtype=np.float64).reshape(-1)
    if n_candidates is None:
        k = np.full(conf.shape, np.nan)
    else:
        k = np.asarray(n_candidates, dtype=np.float64).reshape(-1)
    k = np.where(np.isfinite(k) & (k >= 1), k, 0.0)  # 0 = unknown, a sortable key
    n = int(len(y))
    # One cell per distinct (confidence, k), in sorted order: counts, correct counts, forecast.
    cells: dict[tuple[float, float], list[float]] = {}
    if n:
        keys, inverse = np.unique(np.stack([conf, k], axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        counts = np.bincount(inverse, minlength=len(keys))
        hits = np.bincount(inverse, weights=y, minlength=len(keys))
        forecasts = confidence_forecast(keys[:, 0], np.where(keys[:, 1] > 0, keys[:, 1], np.nan))
        for (c, kk), count, hit, f in zip(keys.tolist(), counts.tolist(), hits.tolist(), forecasts.tolist()):
            cells[(c, kk)] = [float(count), float(hit), float(f)]

    def sums(selected: list[list[float]]) -> tuple[float, float, float, float]:
        count = hit = forecast = squared = 0.0
        for cell_n, cell_hit, f in selected:
            count += cell_n
            hit += cell_hit
            forecast += cell_n * f
            squared += cell_hit * (1.0 - f) ** 2 + (cell_n - cell_hit) * f**2
        return count, hit, forecast, squared

    distinct_k = sorted({kk for _, kk in cells})
    levels = []
    for level in CONFIDENCE_LEVELS:
        at = [cell for (c, _), cell in cells.items() if c == level]
        count, hit, forecast, _ = sums(at)
        if count:
            level_forecast: float | None = forecast / count
        elif len(distinct_k) <= 1:
            only = distinct_k[0] if distinct_k else 0.0
            level_forecast = float(confidence_forecast(np.array(float(level)), np.nan if only == 0 else only))
        else:
            level_forecast = None
        levels.append(
            {
                "confidence": level,
                "forecast": level_forecast,
                "n": int(count),
                "accuracy": hit / count if count else None,
            }
        )
    count, hit, forecast, squared = sums(list(cells.values()))
    return {
        "n": n,
        "accuracy": hit / count if n else None,
        "mean_forecast": forecast / count if n else None,
        "brier": squared / count if n else None,
        "levels": levels,
    }


def calibration(df: pd.DataFrame) -> dict:
    """Calibration per arm and pooled over arms (test phase).

    ``{"per_arm": {arm: table}, "pooled": table}`` with ``table`` as in :func:`calibration_table`;
    ``k`` per response comes from the optional ``candidate_order`` column (module doc).
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
            n_candidates=group["n_candidates"].to_numpy(dtype=np.float64) if "n_candidates" in group else None,
        )

    return {
        "per_arm": {str(arm): table(group) for arm, group in rows.groupby("condition", sort=True)},
        "pooled": table(rows),
    }
