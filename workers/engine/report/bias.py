"""Numbers of the report's bias section that need no model (definitions: docs/MODEL_REPORT.md,
"Social bias"). numpy only (no torch, no Django), so each is tested on hand-computed cases.

* :func:`wilson_interval`: the 95% Wilson score interval of a proportion.
* :func:`bias_scores` and :func:`bias_amplification`: Zhao et al. (EMNLP 2017). For an output
  ``o`` and a group ``g``, ``b(o, g) = c(o, g) / sum_g' c(o, g')``, the share of the ``o``
  answers that go with ``g``. Amplification compares ``b`` in the model's predictions on the test
  items with ``b`` in the training labels, over the pairs the training data already leans
  towards (``b_train(o, g) > 1/|G|``): ``mean (b_pred(o, g) - b_train(o, g))``.
* :func:`cross_validated_predictions` and :func:`leakage`: Wang et al. (ICCV 2019). The accuracy
  of an attribute classifier (here a multinomial logistic regression) fitted on a
  representation of each item, with k-fold cross-validation: on the model's softmax outputs it
  is the *model leakage*, on the gold labels' one-hot vectors the *data leakage*.
* :func:`mass_inside` and :func:`pointing_hit`: the share of absolute attribution inside an
  evidence region, and whether the attribution's maximum falls inside it (the pointing game,
  Zhang et al. 2016).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "amplification_interval",
    "bias_amplification",
    "bias_scores",
    "cross_validated_predictions",
    "evidence_mask",
    "mask_patch_coverage",
    "leakage",
    "mass_inside",
    "pointing_hit",
    "wilson_interval",
]

_Z95 = 1.959963984540054  # the 97.5% point of the standard normal


def wilson_interval(successes: int, n: int, *, z: float = _Z95) -> dict[str, Any]:
    """``{"estimate", "ci_low", "ci_high", "n"}``: ``successes / n`` with its Wilson score
    interval (None where ``n = 0``)."""
    if n <= 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "n": 0}
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return {"estimate": p, "ci_low": max(0.0, centre - half), "ci_high": min(1.0, centre + half), "n": int(n)}


def bias_scores(
    outputs: Sequence[str], groups: Sequence[str], *, output_names: Sequence[str], group_names: Sequence[str]
) -> np.ndarray:
    """``(O, G)`` matrix of ``b(o, g) = c(o, g) / sum_g' c(o, g')`` (NaN for an output that never
    occurs), with ``c`` the co-occurrence counts of ``outputs[i]`` and ``groups[i]``."""
    o_index = {o: k for k, o in enumerate(output_names)}
    g_index = {g: k for k, g in enumerate(group_names)}
    counts = np.zeros((len(output_names), len(group_names)))
    for o, g in zip(outputs, groups):
        if o in o_index and g in g_index:
            counts[o_index[o], g_index[g]] += 1
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)


def bias_amplification(
    *,
    train_outputs: Sequence[str],
    train_groups: Sequence[str],
    predicted: Sequence[str],
    groups: Sequence[str],
    output_names: Sequence[str],
    group_names: Sequence[str],
) -> dict[str, Any]:
    """Zhao et al. (2017) bias amplification of predictions ``predicted`` (with the items'
    ``groups``) against the reference co-occurrences ``train_outputs`` / ``train_groups``.

    Returns ``{"amplification", "pairs": [{"output", "group", "b_train", "b_predicted",
    "difference"}], "n_pairs"}``: the pairs are those with ``b_train(o, g) > 1/|G|`` (the
    training data's leaning) where the output is also predicted; ``amplification`` is the mean
    difference over them (None when there is none)."""
    b_train = bias_scores(train_outputs, train_groups, output_names=output_names, group_names=group_names)
    b_pred = bias_scores(predicted, groups, output_names=output_names, group_names=group_names)
    threshold = 1.0 / len(group_names)
    pairs = []
    for o, output in enumerate(output_names):
        for g, group in enumerate(group_names):
            train, pred = b_train[o, g], b_pred[o, g]
            if np.isfinite(train) and train > threshold and np.isfinite(pred):
                pairs.append(
                    {
                        "output": str(output),
                        "group": str(group),
                        "b_train": float(train),
                        "b_predicted": float(pred),
                        "difference": float(pred - train),
                    }
                )
    amplification = float(np.mean([p["difference"] for p in pairs])) if pairs else None
    return {"amplification": amplification, "pairs": pairs, "n_pairs": len(pairs)}


def _fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, steps: int) -> np.ndarray:
    """Weights ``(F + 1, K)`` of a multinomial logistic regression with an L2 penalty (not on
    the intercept), by full-batch gradient descent from zero (deterministic)."""
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    weights = np.zeros((design.shape[1], n_classes))
    target = np.eye(n_classes)[y]
    # Step 1/L for the smooth part: L <= ||X||^2 / (2 n) + l2 (softmax Hessian <= I/2).
    lipschitz = float(np.linalg.norm(design, ord=2) ** 2) / (2 * len(y)) + l2
    step = 1.0 / max(lipschitz, 1e-12)
    penalty = np.ones((design.shape[1], 1))
    penalty[-1] = 0.0
    for _ in range(steps):
        logits = design @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        gradient = design.T @ (probs - target) / len(y) + l2 * penalty * weights
        weights -= step * gradient
    return weights


def cross_validated_predictions(
    features: np.ndarray, groups: Sequence[str], *, folds: int = 5, seed: int = 0, l2: float = 1e-3, steps: int = 500
) -> np.ndarray:
    """For each item, the group predicted by a logistic regression fitted on the other folds'
    ``features`` ``(N, F)``: folds are stratified by group and shuffled with ``seed``. Returns
    ``(N,)`` group names. Ties (equal scores) go to the first group in sorted order."""
    features = np.asarray(features, dtype=np.float64)
    names = sorted({str(g) for g in groups})
    y = np.array([names.index(str(g)) for g in groups])
    if len(names) < 2:
        raise ValueError("leakage needs at least two groups")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    for k in range(len(names)):
        members = np.flatnonzero(y == k)
        rng.shuffle(members)
        fold_of[members] = np.arange(members.size) % folds
    predicted = np.empty(len(y), dtype=np.int64)
    for fold in range(folds):
        test = fold_of == fold
        if not test.any():
            continue
        train = ~test
        weights = _fit_logistic(features[train], y[train], len(names), l2=l2, steps=steps)
        scores = np.hstack([features[test], np.ones((int(test.sum()), 1))]) @ weights
        predicted[test] = scores.argmax(axis=1)
    return np.array([names[k] for k in predicted], dtype=object)


def leakage(features: np.ndarray, groups: Sequence[str], *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Wang et al. (2019) leakage of ``features`` ``(N, F)``: the cross-validated accuracy of the
    group classifier. ``{"accuracy", "correct": per-item 0/1 list, "majority"}``, where
    ``majority`` is the largest group's share (what a classifier learns from no signal)."""
    predicted = cross_validated_predictions(features, groups, folds=folds, seed=seed)
    correct = np.array([p == str(g) for p, g in zip(predicted, groups)], dtype=np.float64)
    _, counts = np.unique([str(g) for g in groups], return_counts=True)
    return {
        "accuracy": float(correct.mean()),
        "correct": correct.tolist(),
        "majority": float(counts.max() / counts.sum()),
    }


def mass_inside(scores: np.ndarray, region: np.ndarray) -> float | None:
    """``sum |scores[region]| / sum |scores|`` (None when every score is 0). ``scores`` and the
    boolean ``region`` have one shape: group scores, or a map and a mask."""
    magnitude = np.abs(np.asarray(scores, dtype=np.float64))
    total = float(magnitude.sum())
    if total <= 0:
        return None
    return float(magnitude[np.asarray(region, dtype=bool)].sum()) / total


def pointing_hit(scores: np.ndarray, region: np.ndarray) -> bool | None:
    """The pointing game: whether the largest score lies inside ``region`` (a tie counts as a
    hit when one of the tied maxima is inside). None for an empty region or no scores."""
    values = np.asarray(scores, dtype=np.float64)
    inside = np.asarray(region, dtype=bool)
    if not values.size or not inside.any():
        return None
    return bool(values[inside].max() >= values.max())


def evidence_mask(region: Sequence[Any] | dict[str, Any], names: Sequence[str | None]) -> tuple[np.ndarray, list[Any]]:
    """The groups of one item and modality inside its evidence region, and the region's entries
    that name no group. ``names`` are the groups' names in group-ID order as participants see
    them (``probes.group_names``; None for hidden padding). ``region`` lists patch cells
    (``"B3"``: a group named ``patch B3``) or 0-based indices among the visible groups (the
    words of a text), or is a mask's coverage (``dataset.mask_coverage``): then a patch is inside
    when at least half of its area is (:func:`mask_patch_coverage`). Format:
    docs/MODEL_REPORT.md, "Evidence regions"."""
    if isinstance(region, dict):
        shares = mask_patch_coverage(region, names)
        return shares >= 0.5, ([] if np.isfinite(shares).any() else ["mask (no patch grid)"])
    inside = np.zeros(len(names), dtype=bool)
    visible = [k for k, name in enumerate(names) if name is not None]
    cells = {name.removeprefix("patch "): k for k, name in enumerate(names) if name and name.startswith("patch ")}
    unmatched = []
    for entry in region:
        if isinstance(entry, int) and not isinstance(entry, bool):
            if 0 <= entry < len(visible):
                inside[visible[entry]] = True
                continue
        elif isinstance(entry, str) and entry in cells:
            inside[cells[entry]] = True
            continue
        unmatched.append(entry)
    return inside, unmatched


_CELL = re.compile(r"patch ([A-Z]{1,3})([1-9][0-9]*)")


def mask_patch_coverage(mask: dict[str, Any], names: Sequence[str | None]) -> np.ndarray:
    """The share of each patch's area inside a mask (NaN for a group that is no patch). The
    patches are the cells named on the participants' grid (``patch C4``), taken to tile the
    picture evenly, as the grid is drawn; the mask's coverage grid is integrated over each
    cell's rectangle exactly (both are piecewise constant)."""
    fine = int(mask["mask_grid"])
    coverage = np.frombuffer(base64.b64decode(mask["coverage"]), dtype=np.uint8).reshape(fine, fine) / 255.0
    cells = [_CELL.fullmatch(name) if name else None for name in names]
    columns = [_column_index(found.group(1)) for found in cells if found]
    rows = [int(found.group(2)) - 1 for found in cells if found]
    shares = np.full(len(names), np.nan)
    if not columns:
        return shares
    across = _overlaps(max(columns) + 1, fine)  # (patch columns, fine columns), rows sum to 1
    down = _overlaps(max(rows) + 1, fine)
    per_cell = down @ coverage @ across.T  # (patch rows, patch columns)
    for k, found in enumerate(cells):
        if found:
            shares[k] = per_cell[int(found.group(2)) - 1, _column_index(found.group(1))]
    return shares


def _overlaps(coarse: int, fine: int) -> np.ndarray:
    """``W[c, f]``: the share of coarse cell ``c`` (of ``coarse`` over [0, 1]) that fine cell
    ``f`` (of ``fine``) covers."""
    edges_c = np.linspace(0.0, 1.0, coarse + 1)
    edges_f = np.linspace(0.0, 1.0, fine + 1)
    low = np.maximum(edges_c[:-1, None], edges_f[None, :-1])
    high = np.minimum(edges_c[1:, None], edges_f[None, 1:])
    return np.clip(high - low, 0.0, None) * coarse


def _column_index(letters: str) -> int:
    """0-based index of spreadsheet column letters (A = 0, Z = 25, AA = 26)."""
    index = 0
    for letter in letters:
        index = index * 26 + (ord(letter) - ord("A") + 1)
    return index - 1


def amplification_interval(
    *,
    train_outputs: Sequence[str],
    train_groups: Sequence[str],
    predicted: Sequence[str],
    groups: Sequence[str],
    output_names: Sequence[str],
    group_names: Sequence[str],
    seed: int,
    n_resamples: int = 1000,
) -> dict[str, Any]:
    """:func:`bias_amplification` with a 95% percentile-bootstrap interval over the test items
    (the reference table is held fixed): ``{"estimate", "ci_low", "ci_high", "n"}``."""
    result = bias_amplification(
        train_outputs=train_outputs,
        train_groups=train_groups,
        predicted=predicted,
        groups=groups,
        output_names=output_names,
        group_names=group_names,
    )
    if result["amplification"] is None:
        return {"estimate": None, "ci_low": None, "ci_high": None, "n": len(predicted)}
    o_index = {o: k for k, o in enumerate(output_names)}
    g_index = {g: k for k, g in enumerate(group_names)}
    keep = [i for i, (o, g) in enumerate(zip(predicted, groups)) if o in o_index and g in g_index]
    codes = np.array([o_index[predicted[i]] * len(group_names) + g_index[groups[i]] for i in keep], dtype=np.int64)
    pairs = [(o_index[p["output"]], g_index[p["group"]], p["b_train"]) for p in result["pairs"]]
    rng = np.random.default_rng(seed)
    draws = np.empty(n_resamples)
    cells = len(output_names) * len(group_names)
    for r in range(n_resamples):
        sample = codes[rng.integers(0, codes.size, size=codes.size)]
        counts = np.bincount(sample, minlength=cells).reshape(len(output_names), len(group_names)).astype(float)
        totals = counts.sum(axis=1)
        differences = [counts[o, g] / totals[o] - b for o, g, b in pairs if totals[o] > 0]
        draws[r] = np.mean(differences) if differences else np.nan
    finite = draws[np.isfinite(draws)]
    low, high = np.percentile(finite, [2.5, 97.5]).tolist() if finite.size else (None, None)
    return {"estimate": result["amplification"], "ci_low": low, "ci_high": high, "n": int(codes.size), **result}
