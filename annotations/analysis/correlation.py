"""Automatic explanation metrics beside human simulation accuracy.

Question: does an item whose explanation scores well on an automatic metric (deletion AUC,
infidelity, …) also get simulated better by the people who saw that explanation?

Inputs: the response frame (see ``responses``) and an *item frame*, one row per item with an
``item`` column (the same identifiers as the responses) and one float column per automatic metric,
named ``metric:<method>:<metric>`` (e.g. ``metric:integrated_gradients:deletion_auc``,
``metric:integrated_gradients:modality_share:image``) — exactly the service's items export, read
back by :func:`load_items_csv`.

Definitions (per arm, over the test-phase responses that are not attention checks):

* ``accuracy[arm, item] = correct / answered`` of the arm's responses on the item.
* ``per_arm[arm][metric]``: Spearman's ρ and Pearson's r (with their two-sided p-values from
  ``scipy.stats``) between ``metric[item]`` and ``accuracy[arm, item]`` over the items that have
  both. The baseline arm is included as a control: its participants saw no explanation, so a
  correlation there reflects item difficulty, not the explanation.
* ``gain_vs_baseline[arm][metric]``: the same with ``accuracy[arm, item] − accuracy[baseline,
  item]`` (items answered in both arms): does the metric predict where the explanation *helps*?
* ``pooled_explanation_arms[metric]``: accuracy over all non-baseline arms' responses per item.

A coefficient is ``None`` when fewer than 3 items have both values or either side is constant.
Items are sorted by identifier, so the result does not depend on row order. Item-level
accuracies rest on few raters each; the coefficients are descriptive, and their p-values treat
items as independent.
"""

from __future__ import annotations

import os
import warnings
from typing import IO, Any, Final

import numpy as np
import pandas as pd
from scipy import stats

from .responses import responses_prepare

__all__ = [
    "METRIC_PREFIX",
    "item_accuracy",
    "item_accuracy_table",
    "load_items_csv",
    "metric_accuracy_points",
    "metric_columns",
    "metric_human_correlation",
]

METRIC_PREFIX: Final = "metric:"
_ITEM_FLOAT_COLUMNS: Final = ("prediction_probability",)
_ITEM_BOOL_COLUMNS: Final = ("model_correct",)


def metric_columns(items: pd.DataFrame) -> list[str]:
    """The automatic-metric columns of an item frame, in frame order."""
    return [column for column in items.columns if str(column).startswith(METRIC_PREFIX)]


def load_items_csv(path_or_buffer: str | os.PathLike[str] | IO[str] | IO[bytes]) -> pd.DataFrame:
    """Parse the items export: ``item`` and other text as strings (only an empty cell is
    missing), ``metric:*`` and ``prediction_probability`` as float64, ``model_correct`` as a
    nullable boolean."""
    frame = pd.read_csv(path_or_buffer, dtype=str, keep_default_na=False, na_values=[""])
    if "item" not in frame.columns:
        raise ValueError("item CSV lacks the 'item' column")
    for column in [*metric_columns(frame), *[c for c in _ITEM_FLOAT_COLUMNS if c in frame.columns]]:
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    for column in _ITEM_BOOL_COLUMNS:
        if column in frame.columns:
            lowered = frame[column].str.lower()
            frame[column] = lowered.map({"true": True, "false": False}).astype("boolean")
    return frame


def item_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """Simulation accuracy per arm and item over test-phase responses (attention checks left out).

    Columns ``condition``, ``item``, ``n_responses``, ``n_correct``, ``accuracy``, sorted by arm
    and item.
    """
    return _item_accuracy(responses_prepare(df))


def _item_accuracy(prepared: pd.DataFrame) -> pd.DataFrame:
    test = prepared[(prepared["phase"] == "test") & prepared["correct_simulation"].notna()]
    correct = test["correct_simulation"].astype(bool).astype(np.int64)
    grouped = correct.groupby([test["condition"], test["item"]], sort=True)
    out = pd.DataFrame({"n_responses": grouped.size(), "n_correct": grouped.sum()}).reset_index()
    out["accuracy"] = out["n_correct"] / out["n_responses"]
    return out


def _coefficients(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out: dict[str, Any] = {
        "n_items": int(len(x)),
        "spearman_rho": None,
        "spearman_p": None,
        "pearson_r": None,
        "pearson_p": None,
    }
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, p_rho = stats.spearmanr(x, y)
        r, p_r = stats.pearsonr(x, y)
    for key, value in (("spearman_rho", rho), ("spearman_p", p_rho), ("pearson_r", r), ("pearson_p", p_r)):
        value = float(value)
        out[key] = value if np.isfinite(value) else None
    return out


def _section(prepared: pd.DataFrame, items: pd.DataFrame, *, baseline: str, columns: list[str]) -> dict[str, Any]:
    accuracy = _item_accuracy(prepared)
    table = accuracy.pivot(index="item", columns="condition", values="accuracy")
    metrics = items.set_index("item")[columns].astype("float64")
    metrics = metrics[~metrics.index.duplicated(keep="first")]
    item_ids = sorted(set(table.index) | set(metrics.index))
    table = table.reindex(index=item_ids)
    metrics = metrics.reindex(index=item_ids)
    arms = sorted(str(arm) for arm in table.columns)
    explained = prepared[
        (prepared["phase"] == "test") & prepared["correct_simulation"].notna() & (prepared["condition"] != baseline)
    ]
    pooled = explained["correct_simulation"].astype(bool).astype(np.int64).groupby(explained["item"], sort=True).mean()
    pooled = pooled.reindex(item_ids).to_numpy(dtype=np.float64)
    out: dict[str, Any] = {
        "metrics": list(columns),
        "n_items_with_metrics": int(metrics.notna().any(axis=1).sum()),
        "per_arm": {},
        "gain_vs_baseline": {},
        "pooled_explanation_arms": {},
    }
    for arm in arms:
        y = table[arm].to_numpy(dtype=np.float64)
        out["per_arm"][arm] = {c: _coefficients(metrics[c].to_numpy(dtype=np.float64), y) for c in columns}
        if arm != baseline and baseline in table.columns:
            gain = y - table[baseline].to_numpy(dtype=np.float64)
            out["gain_vs_baseline"][arm] = {
                c: _coefficients(metrics[c].to_numpy(dtype=np.float64), gain) for c in columns
            }
    out["pooled_explanation_arms"] = {c: _coefficients(metrics[c].to_numpy(dtype=np.float64), pooled) for c in columns}
    return out


def metric_human_correlation(
    responses: pd.DataFrame, items: pd.DataFrame, *, baseline: str, columns: list[str] | None = None
) -> dict[str, Any]:
    """Correlation of every automatic metric with human simulation accuracy (module docstring).

    Returns ``{"all": section, "after_exclusions": section}``; ``section`` holds ``metrics``,
    ``n_items_with_metrics``, ``per_arm[arm][metric]``, ``gain_vs_baseline[arm][metric]`` and
    ``pooled_explanation_arms[metric]``, each coefficient block ``{"n_items", "spearman_rho",
    "spearman_p", "pearson_r", "pearson_p"}``. ``columns`` defaults to every ``metric:*`` column.
    """
    prepared = responses_prepare(responses)
    frame = items.copy()
    frame["item"] = frame["item"].map(lambda value: value if value is None or isinstance(value, str) else str(value))
    chosen = metric_columns(frame) if columns is None else list(columns)
    missing = [c for c in chosen if c not in frame.columns]
    if missing:
        raise ValueError(f"item frame lacks metric columns {missing}")
    kept = prepared[~prepared["excluded"]]
    return {
        "all": _section(prepared, frame, baseline=baseline, columns=chosen),
        "after_exclusions": _section(kept, frame, baseline=baseline, columns=chosen),
    }


def item_accuracy_table(responses: pd.DataFrame, *, exclusions_applied: bool) -> dict[str, dict[str, float]]:
    """``{item: {arm: accuracy}}`` over test-phase responses (after dropping ``excluded`` rows
    when ``exclusions_applied``)."""
    prepared = responses_prepare(responses)
    if exclusions_applied:
        prepared = prepared[~prepared["excluded"]]
    out: dict[str, dict[str, float]] = {}
    for row in _item_accuracy(prepared).itertuples(index=False):
        out.setdefault(str(row.item), {})[str(row.condition)] = float(row.accuracy)
    return out


def metric_accuracy_points(
    responses: pd.DataFrame, items: pd.DataFrame, *, exclusions_applied: bool, columns: list[str] | None = None
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``points[metric][arm]``: ``(metric value, the arm's accuracy on the item)`` for every item
    that has both, items in identifier order (the data of ``plots.metric_accuracy_svg``)."""
    accuracy = item_accuracy_table(responses, exclusions_applied=exclusions_applied)
    chosen = metric_columns(items) if columns is None else list(columns)
    keyed = items.assign(item=items["item"].map(str)).drop_duplicates("item").set_index("item")
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for column in chosen:
        per_arm: dict[str, list[tuple[float, float]]] = {}
        values = keyed[column].astype("float64")
        for item in sorted(accuracy):
            if item not in values.index or not np.isfinite(values[item]):
                continue
            for arm, value in accuracy[item].items():
                per_arm.setdefault(arm, []).append((float(values[item]), value))
        if per_arm:
            out[column] = {arm: per_arm[arm] for arm in sorted(per_arm)}
    return out
