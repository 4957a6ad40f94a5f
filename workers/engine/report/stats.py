"""Numbers of the model report that need no model: bootstrap intervals, robustness areas, the
overfitting-to-generalization ratio and Gradient-Blending weights. numpy only (no torch, no
Django), so each is tested against values computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONFIDENCE",
    "blending_weights",
    "bootstrap_mean",
    "compare_groups",
    "effective_robustness",
    "emap_gap_interval",
    "learning_intervals",
    "relative_robustness",
]

#: Level of every interval in the report (percentile bootstrap).
CONFIDENCE = 0.95


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _percentiles(samples: np.ndarray) -> tuple[float | None, float | None]:
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return None, None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_means(values: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """``(n_resamples,)`` means of ``values`` (NaN ignored) over item resamples with replacement."""
    n = values.size
    if n == 0:
        return np.full(n_resamples, np.nan)
    index = rng.integers(0, n, size=(n_resamples, n))
    drawn = values[index]
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(drawn).sum(axis=1)
        sums = np.where(np.isfinite(drawn), drawn, 0.0).sum(axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def bootstrap_mean(values: Sequence[float], *, seed: int, n_resamples: int = 1000) -> dict[str, Any]:
    """Mean of ``values`` (NaN ignored) with its 95% percentile-bootstrap interval over items.

    Returns ``{"estimate", "ci_low", "ci_high", "n"}`` (None where undefined)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    estimate = float(finite.mean()) if finite.size else None
    low, high = _percentiles(_resampled_means(arr, np.random.default_rng(seed), n_resamples))
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "n": int(finite.size)}


def compare_groups(
    columns: Mapping[str, Sequence[float]], inside: np.ndarray, *, seed: int, n_resamples: int = 1000
) -> dict[str, dict[str, Any]]:
    """Per column, the mean inside a slice, outside it (the rest) and the difference, each with a
    95% interval from a stratified bootstrap (items resampled within the slice and within the
    rest, independently; the same resamples for every column, so the columns stay comparable).

    Args:
        columns: per-item values, each ``(N,)`` (NaN: undefined for that item).
        inside: bool ``(N,)``, the slice.

    Returns:
        ``{column: {"slice": {...}, "rest": {...}, "difference": {...}}}``, each block
        ``{"estimate", "ci_low", "ci_high", "n"}``. Cost: ``O(n_resamples * N)`` per column.
    """
    inside = np.asarray(inside, dtype=bool)
    rng = np.random.default_rng(seed)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    index_in = rng.integers(0, max(n_in, 1), size=(n_resamples, n_in))
    index_out = rng.integers(0, max(n_out, 1), size=(n_resamples, n_out))
    out: dict[str, dict[str, Any]] = {}
    for name, column in columns.items():
        values = np.asarray(column, dtype=np.float64)
        blocks = {}
        draws = {}
        for part, mask, index in (("slice", inside, index_in), ("rest", ~inside, index_out)):
            part_values = values[mask]
            finite = part_values[np.isfinite(part_values)]
            if part_values.size:
                drawn = part_values[index]
                ok = np.isfinite(drawn)
                with np.errstate(invalid="ignore", divide="ignore"):
                    means = np.where(ok, drawn, 0.0).sum(axis=1) / ok.sum(axis=1)
            else:
                means = np.full(n_resamples, np.nan)
            draws[part] = means
            low, high = _percentiles(means)
            blocks[part] = {
                "estimate": float(finite.mean()) if finite.size else None,
                "ci_low": low,
                "ci_high": high,
                "n": int(finite.size),
            }
        if blocks["slice"]["estimate"] is not None and blocks["rest"]["estimate"] is not None:
            low, high = _percentiles(draws["slice"] - draws["rest"])
            blocks["difference"] = {
                "estimate": blocks["slice"]["estimate"] - blocks["rest"]["estimate"],
                "ci_low": low,
                "ci_high": high,
                "n": n_in + n_out,
            }
        else:
            blocks["difference"] = {"estimate": None, "ci_low": None, "ci_high": None, "n": n_in + n_out}
        out[name] = blocks
    return out


# --------------------------------------------------------------------------- robustness


def relative_robustness(accuracy: Sequence[float], levels: Sequence[float]) -> float:
    """MultiBench's relative robustness: the area under the accuracy-vs-noise curve, with the
    noise levels rescaled to [0, 1] (trapezoids). MultiBench's own levels are 0, 0.1, ..., 1,
    where this is exactly its ``sum((f_i + f_{i+1}) * 0.1 / 2)``."""
    acc = np.asarray(accuracy, dtype=np.float64)
    x = np.asarray(levels, dtype=np.float64)
    if acc.size < 2 or x[-1] <= x[0]:
        return float(acc[0]) if acc.size else float("nan")
    x = (x - x[0]) / (x[-1] - x[0])
    return float(np.sum((acc[1:] + acc[:-1]) * np.diff(x) / 2))


def effective_robustness(accuracy: Sequence[float], reference: Sequence[float]) -> float:
    """MultiBench's effective robustness: ``sum_i (f_i - (r_i + f_0 - r_0))``, how much
    accuracy the curve ``f`` keeps beyond the reference curve ``r`` shifted to start at the
    same clean accuracy (MultiBench's reference is a late-fusion model; see the report's
    ``robustness.reference``). Positive: more robust than the reference predicts."""
    f = np.asarray(accuracy, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if f.shape != r.shape:
        raise ValueError(f"the curve has {f.size} levels, the reference {r.size}")
    return float(np.sum(f - (r + f[0] - r[0])))


# --------------------------------------------------------------------------- learning process


def blending_weights(delta_g: Mapping[str, float], delta_o: Mapping[str, float]) -> dict[str, float] | None:
    """Gradient-Blending weights (Wang et al., CVPR 2020): ``w_k ∝ ΔG_k / ΔO_k²``, normalised
    to sum to 1.

    A head whose validation loss rose (``ΔG_k <= 0``) gets weight 0: it no longer
    generalises. Heads with ``ΔO_k = 0`` and ``ΔG_k > 0`` (infinite ratio) share all the
    weight equally. None when no head improved.
    """
    keys = list(delta_g)
    improving = [k for k in keys if delta_g[k] is not None and delta_o[k] is not None and delta_g[k] > 0]
    if not improving:
        return None
    infinite = [k for k in improving if delta_o[k] == 0]
    if infinite:
        return {k: (1.0 / len(infinite) if k in infinite else 0.0) for k in keys}
    raw = {k: (delta_g[k] / delta_o[k] ** 2 if k in improving else 0.0) for k in keys}
    total = sum(raw.values())
    return {k: raw[k] / total for k in keys}


def learning_intervals(checkpoints: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """OGR and Gradient-Blending weights between consecutive checkpoints and over the whole run.

    Args:
        checkpoints: in training order, each ``{"name", "losses": {"train": {k: L}, "val":
            {k: L}}}``, ``k`` over the heads (``full`` and one per modality alone).

    With ``O = L_val - L_train`` and ``G = L_val``, between checkpoints ``n`` and ``n+1``::

        ΔO = O_{n+1} - O_n,   ΔG = G_n - G_{n+1},   OGR = ΔO / ΔG

    (None when ``ΔG = 0``). Returns ``{"intervals": [{"from", "to", "heads": {k: {"delta_o",
    "delta_g", "ogr"}}, "weights": {k: w} | None}], "overall": {...}}``; ``overall`` spans the
    first and the last checkpoint.
    """

    def interval(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        heads, delta_g, delta_o = {}, {}, {}
        for k in a["losses"]["val"]:
            try:
                o_a = a["losses"]["val"][k] - a["losses"]["train"][k]
                o_b = b["losses"]["val"][k] - b["losses"]["train"][k]
                g_a, g_b = a["losses"]["val"][k], b["losses"]["val"][k]
            except (KeyError, TypeError):
                continue
            d_o, d_g = o_b - o_a, g_a - g_b
            delta_o[k], delta_g[k] = d_o, d_g
            heads[k] = {"delta_o": d_o, "delta_g": d_g, "ogr": _finite_or_none(d_o / d_g) if d_g else None}
        return {
            "from": a["name"],
            "to": b["name"],
            "heads": heads,
            "weights": blending_weights(delta_g, delta_o) if heads else None,
        }

    ordered = list(checkpoints)
    intervals = [interval(a, b) for a, b in zip(ordered, ordered[1:])]
    overall = interval(ordered[0], ordered[-1]) if len(ordered) >= 2 else None
    return {"intervals": intervals, "overall": overall}


# --------------------------------------------------------------------------- EMAP


def emap_gap_interval(
    pair_logits: np.ndarray, gold: np.ndarray, *, seed: int, n_resamples: int = 1000
) -> dict[str, Any]:
    """The EMAP gap with a 95% bootstrap interval that redoes the projection on each resample.

    Args:
        pair_logits: ``(N, N, C)``, ``L[i, j] = f(a_i, b_j)``.
        gold: ``(N,)`` class indices.

    For a resample ``S`` (items drawn with replacement) the projection of ``i`` in ``S`` is
    ``mean_{j in S} L[i, j] + mean_{j in S} L[j, i] - mean_{k, l in S} L[k, l]``, so the
    interval covers the projection's own dependence on the sample. Cost: ``O(n_resamples *
    N^2 * C)``.
    """
    pair = np.asarray(pair_logits, dtype=np.float64)
    gold = np.asarray(gold)
    n = pair.shape[0]
    rng = np.random.default_rng(seed)
    c = pair.shape[2]
    model_right = (pair[np.arange(n), np.arange(n)].argmax(axis=1) == gold).astype(np.float64)  # (N,)
    # The weighted means as matrix products (BLAS; three times faster than einsum's loops).
    by_row = np.ascontiguousarray(pair.transpose(0, 2, 1)).reshape(n * c, n)  # [(i, c), j] = L[i, j, c]
    by_column = np.ascontiguousarray(pair.transpose(1, 2, 0)).reshape(n * c, n)  # [(i, c), j] = L[j, i, c]

    def gaps(weights: np.ndarray) -> np.ndarray:
        """Gaps for resamples given as multiplicities ``(R, N)`` (each row sums to ``N``):
        the means over a resample are multiplicity-weighted means over the items."""
        w = weights / n
        row_means = (w @ by_row.T).reshape(-1, n, c)  # mean_j L[i, j]
        col_means = (w @ by_column.T).reshape(-1, n, c)  # mean_j L[j, i]
        grand = np.einsum("ri,ric->rc", w, row_means)  # mean_{k,l} L[k, l]
        projection = row_means + col_means - grand[:, None, :]
        projection_right = (projection.argmax(axis=2) == gold[None, :]).astype(np.float64)
        return (w * (model_right[None, :] - projection_right)).sum(axis=1)

    estimate = float(gaps(np.ones((1, n)))[0])
    draws = []
    per_chunk = max(1, 2_000_000 // max(1, n * pair.shape[2]))
    for start in range(0, n_resamples, per_chunk):
        count = min(per_chunk, n_resamples - start)
        index = rng.integers(0, n, size=(count, n))
        weights = np.zeros((count, n))
        np.add.at(weights, (np.arange(count)[:, None], index), 1.0)
        draws.append(gaps(weights))
    low, high = _percentiles(np.concatenate(draws))
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "n": int(n)}
