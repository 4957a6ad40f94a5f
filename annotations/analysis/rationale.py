"""Rationale annotation (ERASER, DeYoung et al., ACL 2020; Hendricks et al., ECCV 2018): each
participant marks the units of an item that are evidence for its gold answer (patch cells of the
image grid, words of a text, rows of a table). This module scores how far annotators agree, merges
their marks into one rationale per item, and scores attribution methods for *plausibility*
against that rationale. numpy/scipy/pandas only (no Django, no sklearn at run time).

Units
-----
A *case* is one (item, modality): its units are numbered ``0 .. n_units - 1`` (the caller maps
patch cells to numbers). An annotation is the set of units one participant marked in one case.

Agreement
---------
* **Mean pairwise IoU**: per case, the mean over pairs of its annotators of
  ``|A ∩ B| / |A ∪ B|`` (a pair where both marked nothing has no IoU and is left out); the
  estimate is the mean over cases that have at least one such pair.
* **Krippendorff's α (nominal)**: each (case, unit) is a unit of analysis, each annotator of the
  case gives it the value marked (1) or unmarked (0); annotators who did not see the case are
  missing. With ``a`` marks among ``m`` values of a unit (``m >= 2``), the coincidence
  ``o_01 = Σ a (m − a) / (m − 1)``, ``n_1 = Σ a``, ``n_0 = Σ (m − a)``, ``n = n_0 + n_1`` and
  ``α = 1 − (n − 1) o_01 / (n_0 n_1)`` (undefined when every value is the same).

Per annotator, **leave-one-out IoU**: the mean over the annotator's cases of the IoU between
their marks and the strict majority of the case's *other* annotators (cases with fewer than two
others, or where both are empty, left out): an annotator who marks carelessly stands out.

Aggregation
-----------
The aggregated rationale of a case keeps the units marked by a strict majority of its
annotators (share ``> 0.5``: with two annotators, both; ties are left out), so one careless
annotator cannot add evidence alone. A case whose majority is empty has no rationale and is not
scored.

Plausibility
------------
For a method's scores ``s`` over a case's units (higher = more important) and the aggregated
rationale ``R`` (``k = |R|``):

* **token F1**: the top-``k`` units of ``s`` (ties broken by the lower unit number) against
  ``R``: ``2PR / (P + R)`` (with ``k`` predicted units, ``P = R = F1 = |top-k ∩ R| / k``);
* **IOU-F1**: whether ``IoU(top-k, R) >= 0.5`` (ERASER's match threshold); its mean over cases
  is ERASER's IOU F1 with one predicted and one gold rationale per case;
* **AUPRC**: the average precision of ``s`` ranking ``R``, ``Σ (R_i − R_{i−1}) P_i`` over the
  distinct score thresholds (sklearn's ``average_precision_score``);
* **pointing game**: whether the largest score lies in ``R`` (a tie with a unit inside counts
  as a hit, as in the model report's ``pointing_hit``).

Each measure's estimate is the mean over the scored cases; its interval is the percentile
interval of the item bootstrap (items drawn with replacement, all of an item's cases with it;
stream ``SeedSequence([seed, 5, n_items])``). *Chance* is the value of each measure for a
uniformly random ranking: ``k/n`` for token F1 and the pointing game (exact), the prevalence
``k/n`` for AUPRC (its large-``n`` limit), and the hypergeometric probability of an overlap
``>= 2k/3`` for IOU-F1 (exact).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Final

import numpy as np
import pandas as pd
from scipy import stats

from .responses import _as_bool

__all__ = [
    "PLAUSIBILITY_MEASURES",
    "aggregate_rationales",
    "annotator_agreement",
    "average_precision",
    "krippendorff_alpha_binary",
    "parse_units",
    "pairwise_iou",
    "plausibility_case",
    "rationale_agreement",
    "rationale_plausibility",
    "rationale_prepare",
]

PLAUSIBILITY_MEASURES: Final = ("token_f1", "iou_f1", "auprc", "pointing")
#: ERASER's IoU threshold for a match.
IOU_MATCH: Final = 0.5
_STREAM_RATIONALE: Final = 5


def parse_units(value: object) -> tuple[int, ...]:
    """A cell of marked units → sorted unit numbers: a list/tuple/array of ints, or the export's
    space-separated string (``"3 0 7"``; empty: none). Raises ``ValueError`` on anything else."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ()
    if isinstance(value, str):
        parts = value.split()
        if not all(part.isdigit() for part in parts):
            raise ValueError(f"units must be whole numbers >= 0 separated by spaces, not {value[:80]!r}")
        values = [int(part) for part in parts]
    elif isinstance(value, (list, tuple, np.ndarray)):
        values = list(value)
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in values):
            raise ValueError(f"units must be whole numbers >= 0, not {values[:10]!r}")
        values = [int(v) for v in values]
    else:
        raise ValueError(f"units must be a list or a space-separated string, not {value!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"units repeat a unit: {values[:10]!r}")
    return tuple(sorted(values))


def rationale_prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The annotations of a frame: ``participant``, ``item``, ``modality`` (strings), ``n_units``
    (int) and ``units`` (sorted tuple of ints below ``n_units``). Rows with a true ``excluded`` or
    ``is_attention_check`` are left out when those columns exist. Raises ``ValueError`` on a
    missing column, a unit out of range, two rows for one (participant, item, modality), or a case
    whose rows disagree on ``n_units``."""
    missing = [c for c in ("participant", "item", "modality", "n_units", "units") if c not in df.columns]
    if missing:
        raise ValueError(f"rationale frame lacks columns {missing}")
    df = df.reset_index(drop=True)
    keep = np.ones(len(df), dtype=bool)
    for flag in ("is_attention_check", "excluded"):
        if flag in df.columns:
            keep &= ~_as_bool(df[flag], column=flag, missing=False).to_numpy(dtype=bool)
    rows = df[keep]
    out = pd.DataFrame(
        {
            "participant": rows["participant"].astype(str).to_numpy(),
            "item": rows["item"].astype(str).to_numpy(),
            "modality": rows["modality"].astype(str).to_numpy(),
            "n_units": pd.to_numeric(rows["n_units"], errors="raise").astype(np.int64).to_numpy(),
            "units": [parse_units(v) for v in rows["units"]],
        }
    )
    if (out["n_units"] <= 0).any():
        raise ValueError("n_units must be positive")
    too_far = [u for u, n in zip(out["units"], out["n_units"]) if u and u[-1] >= n]
    if too_far:
        raise ValueError(f"a unit is out of range: {too_far[0]!r}")
    if out.duplicated(["participant", "item", "modality"]).any():
        raise ValueError("a participant has two annotations of one item and modality")
    if (out.groupby(["item", "modality"])["n_units"].nunique() > 1).any():
        raise ValueError("the annotations of one item and modality disagree on n_units")
    return out.sort_values(["item", "modality", "participant"], kind="stable").reset_index(drop=True)


def _cases(prepared: pd.DataFrame) -> list[tuple[str, str, int, np.ndarray, list[str]]]:
    """Per case (sorted by item, modality): item, modality, n_units, the annotators × units
    boolean matrix and its rows' participants (sorted)."""
    out = []
    for (item, modality), group in prepared.groupby(["item", "modality"], sort=True):
        n = int(group["n_units"].iloc[0])
        masks = np.zeros((len(group), n), dtype=bool)
        for row, units in enumerate(group["units"]):
            masks[row, list(units)] = True
        out.append((item, modality, n, masks, group["participant"].tolist()))
    return out


def pairwise_iou(masks: np.ndarray) -> float | None:
    """The mean IoU over the pairs of rows of a boolean annotators × units matrix, leaving out
    pairs where both are empty; None without such a pair."""
    values = []
    for a, b in combinations(np.asarray(masks, dtype=bool), 2):
        union = int((a | b).sum())
        if union:
            values.append(int((a & b).sum()) / union)
    return float(np.mean(values)) if values else None


def _alpha_terms(masks: np.ndarray) -> tuple[float, float, float]:
    """``(o_01, n_0, n_1)`` of one case's units (module docstring)."""
    m = masks.shape[0]
    if m < 2:
        return 0.0, 0.0, 0.0
    a = masks.sum(axis=0).astype(np.float64)
    return float((a * (m - a)).sum() / (m - 1)), float((m - a).sum()), float(a.sum())


def _alpha(o01, n0, n1):
    n = n0 + n1
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n0 * n1 > 0, 1.0 - (n - 1.0) * o01 / (n0 * n1), np.nan)


def krippendorff_alpha_binary(cases: Sequence[np.ndarray]) -> float | None:
    """Krippendorff's α (nominal) of marked/unmarked over the units of ``cases`` (each a boolean
    annotators × units matrix); None where undefined."""
    terms = np.array([_alpha_terms(np.asarray(c, dtype=bool)) for c in cases], dtype=np.float64).reshape(-1, 3)
    value = float(_alpha(*terms.sum(axis=0)))
    return value if np.isfinite(value) else None


def annotator_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Per participant: ``participant``, ``n_cases`` (cases with a leave-one-out IoU) and
    ``loo_iou`` (module docstring; NaN without such a case), lowest first."""
    prepared = rationale_prepare(df)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _item, _modality, _n, masks, annotators in _cases(prepared):
        if masks.shape[0] < 3:
            continue
        for row, participant in enumerate(annotators):
            others = np.delete(masks, row, axis=0)
            majority = others.mean(axis=0) > 0.5
            union = int((majority | masks[row]).sum())
            if union:
                sums[participant] = sums.get(participant, 0.0) + int((majority & masks[row]).sum()) / union
                counts[participant] = counts.get(participant, 0) + 1
    participants = sorted(prepared["participant"].unique())
    out = pd.DataFrame(
        {
            "participant": participants,
            "n_cases": [counts.get(p, 0) for p in participants],
            "loo_iou": [sums[p] / counts[p] if counts.get(p) else np.nan for p in participants],
        }
    )
    return out.sort_values(["loo_iou", "participant"], kind="stable").reset_index(drop=True)


def aggregate_rationales(df: pd.DataFrame, *, majority: float = 0.5) -> pd.DataFrame:
    """One rationale per case: ``item``, ``modality``, ``n_units``, ``n_annotators``, ``units``
    (the units marked by a share ``> majority`` of the case's annotators, sorted tuple) and
    ``support`` (per unit of ``units``, the share of annotators who marked it)."""
    prepared = rationale_prepare(df)
    rows = []
    for item, modality, n, masks, _ in _cases(prepared):
        share = masks.mean(axis=0)
        units = np.flatnonzero(share > majority)
        rows.append(
            {
                "item": item,
                "modality": modality,
                "n_units": n,
                "n_annotators": int(masks.shape[0]),
                "units": tuple(int(u) for u in units),
                "support": tuple(float(share[u]) for u in units),
            }
        )
    return pd.DataFrame(rows, columns=["item", "modality", "n_units", "n_annotators", "units", "support"])


def _item_bootstrap_counts(n_items: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_items)`` how often each item is drawn in each resample."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM_RATIONALE, n_items]))
    draws = rng.integers(0, n_items, size=(n_resamples, n_items)) if n_items else np.zeros((n_resamples, 0), int)
    counts = np.zeros((n_resamples, n_items), dtype=np.float64)
    for r in range(n_resamples):
        counts[r] = np.bincount(draws[r], minlength=n_items)
    return counts


def _percentile(estimate: float | None, replicates: np.ndarray, confidence_level: float) -> dict:
    finite = replicates[np.isfinite(replicates)]
    if estimate is None or not finite.size:
        return {"estimate": estimate, "ci_low": None, "ci_high": None, "n_resamples_valid": int(finite.size)}
    tail = (1 - confidence_level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return {
        "estimate": float(estimate),
        "ci_low": float(low),
        "ci_high": float(high),
        "n_resamples_valid": int(finite.size),
    }


def _check(n_resamples: int, confidence_level: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0 < confidence_level < 1:
        raise ValueError("confidence_level must lie strictly between 0 and 1")


def rationale_agreement(
    df: pd.DataFrame, *, seed: int, n_resamples: int = 1000, confidence_level: float = 0.95
) -> dict:
    """Agreement between annotators (module docstring): ``{"pairwise_iou": {...}, "alpha":
    {...}, "data": {...}}``, each measure with ``estimate``, ``ci_low``/``ci_high`` (item
    bootstrap percentile interval) and ``n_resamples_valid``; ``data`` counts ``n_items``,
    ``n_cases``, ``n_participants``, ``n_annotations`` and ``mean_annotators`` per case."""
    _check(n_resamples, confidence_level)
    prepared = rationale_prepare(df)
    if prepared.empty:
        raise ValueError("no rationale annotations to analyse")
    cases = _cases(prepared)
    items = sorted({item for item, *_ in cases})
    index = {item: k for k, item in enumerate(items)}
    iou_sum = np.zeros(len(items))
    iou_count = np.zeros(len(items))
    alpha_terms = np.zeros((len(items), 3))
    for item, _modality, _n, masks, _ in cases:
        value = pairwise_iou(masks)
        if value is not None:
            iou_sum[index[item]] += value
            iou_count[index[item]] += 1
        alpha_terms[index[item]] += _alpha_terms(masks)
    counts = _item_bootstrap_counts(len(items), n_resamples=int(n_resamples), seed=seed)
    iou_estimate = float(iou_sum.sum() / iou_count.sum()) if iou_count.sum() else None
    with np.errstate(divide="ignore", invalid="ignore"):
        iou_replicates = (counts @ iou_sum) / (counts @ iou_count)
    alpha_estimate = krippendorff_alpha_binary([masks for _, _, _, masks, _ in cases])
    boot_terms = counts @ alpha_terms
    alpha_replicates = _alpha(boot_terms[:, 0], boot_terms[:, 1], boot_terms[:, 2])
    return {
        "pairwise_iou": _percentile(iou_estimate, iou_replicates, confidence_level),
        "alpha": _percentile(alpha_estimate, alpha_replicates, confidence_level),
        "data": {
            "n_items": len(items),
            "n_cases": len(cases),
            "n_participants": int(prepared["participant"].nunique()),
            "n_annotations": int(len(prepared)),
            "mean_annotators": float(np.mean([masks.shape[0] for _, _, _, masks, _ in cases])),
        },
    }


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float | None:
    """Average precision of ``scores`` ranking the true entries of ``relevant`` (sklearn's
    definition: one step per distinct score); None without a relevant unit."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(relevant, dtype=bool)
    positives = int(y.sum())
    if not positives:
        return None
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last position of each run of equal scores is a threshold
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    true_positives = np.cumsum(y)[last]
    precision = true_positives / (last + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _chance_iou_match(n: int, k: int) -> float:
    """P(IoU(random k of n, fixed k of n) >= 0.5) = P(overlap >= 2k/3), hypergeometric."""
    need = int(np.ceil(2 * k / 3 - 1e-12))
    return float(stats.hypergeom.sf(need - 1, n, k, k))


def plausibility_case(scores: np.ndarray, rationale: np.ndarray) -> dict[str, float] | None:
    """The four measures of one case (module docstring) and their chance values
    (``chance_<measure>``); None for an empty rationale."""
    s = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(rationale, dtype=bool)
    if s.shape != gold.shape:
        raise ValueError(f"scores have {s.size} units, the rationale {gold.size}")
    k, n = int(gold.sum()), int(gold.size)
    if not k:
        return None
    predicted = np.zeros(n, dtype=bool)
    predicted[np.argsort(-s, kind="stable")[:k]] = True
    overlap = int((predicted & gold).sum())
    precision, recall = overlap / int(predicted.sum()), overlap / k  # equal here: k units predicted
    f1 = 2 * precision * recall / (precision + recall) if overlap else 0.0
    iou = overlap / int((predicted | gold).sum())
    return {
        "token_f1": f1,
        "iou_f1": float(iou >= IOU_MATCH),
        "auprc": average_precision(s, gold),
        "pointing": float(s[gold].max() >= s.max()),
        "chance_token_f1": k / n,
        "chance_iou_f1": _chance_iou_match(n, k),
        "chance_auprc": k / n,
        "chance_pointing": k / n,
    }


def rationale_plausibility(
    rationales: pd.DataFrame,
    attributions: pd.DataFrame,
    *,
    slices: Mapping[str, str] | None = None,
    seed: int,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
) -> dict:
    """Plausibility of each method against the aggregated rationales (module docstring).

    ``rationales``: :func:`aggregate_rationales`'s frame (``item``, ``modality``, ``n_units``,
    ``units``). ``attributions``: ``method``, ``item``, ``modality`` and ``scores`` (a sequence
    of ``n_units`` numbers, higher = more important). ``slices``: item → slice name (e.g. the
    question type); every method is also scored per modality (slice ``modality:<name>``).

    ``result["methods"][method][slice][measure]`` holds ``estimate``, ``ci_low``, ``ci_high``,
    ``n_resamples_valid``, ``chance`` and ``n_cases``; the slice ``"all"`` pools every case.
    ``result["data"]`` counts ``n_cases`` with a rationale, ``n_empty`` (no majority) and the
    ``missing`` (method, item, modality) triples with no attribution.
    """
    _check(n_resamples, confidence_level)
    for frame, needed in (
        (rationales, ("item", "modality", "n_units", "units")),
        (attributions, ("method", "item", "modality", "scores")),
    ):
        lacking = [c for c in needed if c not in frame.columns]
        if lacking:
            raise ValueError(f"frame lacks columns {lacking}")
    gold: dict[tuple[str, str], np.ndarray] = {}
    n_empty = 0
    for item, modality, n, units in zip(
        rationales["item"].astype(str), rationales["modality"].astype(str), rationales["n_units"], rationales["units"]
    ):
        units = parse_units(units)
        if not units:
            n_empty += 1
            continue
        mask = np.zeros(int(n), dtype=bool)
        mask[list(units)] = True
        gold[(item, modality)] = mask
    if not gold:
        raise ValueError("no item has an aggregated rationale to score against")
    items = sorted({item for item, _ in gold})
    index = {item: k for k, item in enumerate(items)}
    counts = _item_bootstrap_counts(len(items), n_resamples=int(n_resamples), seed=seed)
    scores_of: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for method, item, modality, scores in zip(
        attributions["method"].astype(str),
        attributions["item"].astype(str),
        attributions["modality"].astype(str),
        attributions["scores"],
    ):
        scores_of.setdefault(method, {})[(item, modality)] = np.asarray(scores, dtype=np.float64)
    slice_of = {str(k): str(v) for k, v in (slices or {}).items()}
    missing: list[tuple[str, str, str]] = []
    out: dict[str, dict] = {}
    for method in sorted(scores_of):
        per_case = []
        for (item, modality), mask in sorted(gold.items()):
            scores = scores_of[method].get((item, modality))
            if scores is None:
                missing.append((method, item, modality))
                continue
            values = plausibility_case(scores, mask)
            names = ["all", f"modality:{modality}"] + ([slice_of[item]] if item in slice_of else [])
            per_case.append((index[item], names, values))
        groups = sorted({name for _, names, _ in per_case for name in names}, key=lambda s: (s != "all", s))
        method_out: dict[str, dict] = {}
        for group in groups:
            group_out = {}
            for measure in PLAUSIBILITY_MEASURES:
                sums = np.zeros(len(items))
                chance = np.zeros(len(items))
                n_cases = np.zeros(len(items))
                for k, names, values in per_case:
                    if group in names:
                        sums[k] += values[measure]
                        chance[k] += values[f"chance_{measure}"]
                        n_cases[k] += 1
                with np.errstate(divide="ignore", invalid="ignore"):
                    replicates = (counts @ sums) / (counts @ n_cases)
                result = _percentile(float(sums.sum() / n_cases.sum()), replicates, confidence_level)
                result["chance"] = float(chance.sum() / n_cases.sum())
                result["n_cases"] = int(n_cases.sum())
                group_out[measure] = result
            method_out[group] = group_out
        out[method] = method_out
    return {
        "methods": out,
        "data": {"n_cases": len(gold), "n_items": len(items), "n_empty": n_empty, "missing": missing},
    }
