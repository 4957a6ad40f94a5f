"""Time on task: response times of test-phase responses."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .responses import responses_prepare

__all__ = ["rt_summary", "time_on_task"]


def rt_summary(rt_ms: np.ndarray) -> dict:
    """``{"n", "median_rt_ms", "q1_rt_ms", "q3_rt_ms", "iqr_rt_ms"}`` of the non-missing times.

    Quartiles are ``numpy.quantile`` with linear interpolation (Hyndman & Fan type 7, the pandas
    and R default); ``iqr = q3 − q1``. ``None`` when there is no time.
    """
    values = np.asarray(rt_ms, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"n": 0, "median_rt_ms": None, "q1_rt_ms": None, "q3_rt_ms": None, "iqr_rt_ms": None}
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "n": int(len(values)),
        "median_rt_ms": float(median),
        "q1_rt_ms": float(q1),
        "q3_rt_ms": float(q3),
        "iqr_rt_ms": float(q3 - q1),
    }


def time_on_task(df: pd.DataFrame) -> dict:
    """Per-response time on task of test-phase rows: ``{"per_arm": {arm: summary}, "pooled": summary}``.

    ``summary`` as in :func:`rt_summary` (one value per response, not per participant).
    """
    return _time_on_task(responses_prepare(df))


def _time_on_task(prepared: pd.DataFrame) -> dict:
    test = prepared[prepared["phase"] == "test"]
    return {
        "per_arm": {
            str(arm): rt_summary(group["rt_ms"].to_numpy(dtype=np.float64))
            for arm, group in test.groupby("condition", sort=True)
        },
        "pooled": rt_summary(test["rt_ms"].to_numpy(dtype=np.float64)),
    }
