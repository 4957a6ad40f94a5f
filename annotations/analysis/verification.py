"""Verification and reliance (HIVE; Bansal et al., CHI 2021): a participant sees the model's
answer (and, per arm, its explanation) and says whether it is right.

Definitions
-----------
Over an arm's test-phase verdicts (attention checks and, in the "after exclusions" section,
excluded participants left out), with ``accept`` = the participant said "right" and
``model_right`` = ``model_prediction == gold_label``:

* **verdict accuracy** = mean of ``accept == model_right``;
* **over-reliance** = P(accept | model wrong): the mean of ``accept`` over the rows whose
  model answer is wrong;
* **under-reliance** = P(reject | model right): the mean of ``not accept`` over the rows whose
  model answer is right;
* **trust** = P(accept), the mean of ``accept``;
* **trust gap** = P(accept) − the model's accuracy on the items shown = the mean of
  ``accept − model_right`` over the same rows (positive: people accept more than the model
  deserves).

Each is the mean of a per-answer value ``y`` over a set of rows, so each gets the two-way
(participant × item) interval of :mod:`.accuracy`: the moment variance with Student's ``t``
and Satterthwaite's degrees of freedom (cluster-robust where the components cannot be
estimated), on the logit scale for the four proportions and on the plain scale for the trust
gap, plus the two-way product bootstrap's percentile interval (participants within arm, item
counts shared by the arms; stream ``SeedSequence([seed, 4, ...])``). The **effect** of an arm is
its value minus the baseline's, with the two-way interval of the difference (participants in
each arm, items shared) and the bootstrap interval of the per-resample differences.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
from scipy import special

from .accuracy import (
    _bootstrap_interval,
    _build_clusters,
    _check_between_subjects,
    _check_resamples,
    _difference_variance,
    _float,
    _interval,
    _levels,
    _ratio,
    _TestData,
    _two_way_bootstrap_totals,
)
from .responses import _as_bool, sorted_codes

__all__ = ["RELIANCE_MEASURES", "verification_prepare", "verification_reliance"]

#: Measure -> (value per answer, rows it averages over, proportion?).
RELIANCE_MEASURES: Final = ("verdict_accuracy", "over_reliance", "under_reliance", "trust", "trust_gap")
_PROPORTIONS: Final = frozenset(RELIANCE_MEASURES) - {"trust_gap"}
_STREAM_VERIFICATION: Final = 4


def verification_prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The test-phase verdicts of a response frame: ``condition``, ``participant``, ``item``
    (strings), ``accept`` and ``model_right`` (bools). Needs the columns ``condition``,
    ``participant``, ``item``, ``phase``, ``verdict`` (bool: said right), ``model_prediction``
    and ``gold_label``; rows with a true ``is_attention_check`` or ``excluded`` are left out when
    those columns exist, and rows without a verdict are left out. Raises ``ValueError`` on a
    missing column."""
    missing = [
        c
        for c in ("condition", "participant", "item", "phase", "verdict", "model_prediction", "gold_label")
        if c not in df.columns
    ]
    if missing:
        raise ValueError(f"verification frame lacks columns {missing}")
    df = df.reset_index(drop=True)
    keep = df["phase"].astype(str).to_numpy() == "test"
    for flag in ("is_attention_check", "excluded"):
        if flag in df.columns:
            keep &= ~_as_bool(df[flag], column=flag, missing=False).to_numpy(dtype=bool)
    verdict = _as_bool(df["verdict"], column="verdict", missing=None)
    keep &= verdict.notna().to_numpy()
    rows = df[keep]
    out = pd.DataFrame(
        {
            "condition": rows["condition"].astype(str).to_numpy(),
            "participant": rows["participant"].astype(str).to_numpy(),
            "item": rows["item"].astype(str).to_numpy(),
            "accept": verdict[keep].astype(bool).to_numpy(),
            "model_right": (rows["model_prediction"].astype(str) == rows["gold_label"].astype(str)).to_numpy(),
        }
    )
    return out


def _order(prepared: pd.DataFrame) -> np.ndarray:
    """The canonical row order (participant, then item, then input order): every sum runs in
    an order that the input's row order cannot change but for exact duplicates."""
    _, item_code = sorted_codes(prepared["item"])
    _, participant_code = sorted_codes(prepared["participant"])
    return np.lexsort((np.arange(len(prepared)), item_code, participant_code))


def _data(prepared: pd.DataFrame, y: np.ndarray, order: np.ndarray) -> _TestData:
    """The verdicts as :class:`.accuracy._TestData` with ``correct`` = ``y``, in ``order``."""
    arm = prepared["condition"].to_numpy(dtype=object)
    items, item_code = sorted_codes(prepared["item"])
    _, participant_code = sorted_codes(prepared["participant"])
    return _TestData(
        arms=tuple(sorted(set(arm))),
        items=items,
        arm=arm[order],
        participant=participant_code[order],
        item_code=item_code[order],
        correct=np.asarray(y, dtype=np.float64)[order],
        model_correct=prepared["model_right"].to_numpy(dtype=bool)[order],
    )


def _measures(prepared: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per measure, the per-answer value and the rows it averages over."""
    accept = prepared["accept"].to_numpy(dtype=bool)
    right = prepared["model_right"].to_numpy(dtype=bool)
    every = np.ones(len(accept), dtype=bool)
    return {
        "verdict_accuracy": ((accept == right).astype(np.float64), every),
        "over_reliance": (accept.astype(np.float64), ~right),
        "under_reliance": ((~accept).astype(np.float64), right),
        "trust": (accept.astype(np.float64), every),
        "trust_gap": (accept.astype(np.float64) - right.astype(np.float64), every),
    }


def _linear_interval(estimate: float, variance, replicates: np.ndarray, *, confidence_level: float, bound: float):
    """``estimate ± t · se`` clipped to [−bound, bound], with the bootstrap's percentile interval."""
    boot = _bootstrap_interval(estimate, replicates, confidence_level=confidence_level)
    value, df = variance
    if not np.isfinite(estimate) or value is None:
        return dict(estimate=_float(estimate), ci_low=None, ci_high=None, se=None, df=None, bootstrap=boot)
    se = float(np.sqrt(value))
    if se == 0.0 or df is None:
        return dict(
            estimate=float(estimate), ci_low=float(estimate), ci_high=float(estimate), se=se, df=df, bootstrap=boot
        )
    half = float(special.stdtrit(df, _levels(confidence_level)[1])) * se  # = stats.t.ppf, without its checks
    return dict(
        estimate=float(estimate),
        ci_low=max(estimate - half, -bound),
        ci_high=min(estimate + half, bound),
        se=se,
        df=float(df),
        bootstrap=boot,
    )


def verification_reliance(
    df: pd.DataFrame,
    *,
    baseline: str | None,
    seed: int,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
) -> dict:
    """Reliance per arm and its effects against ``baseline`` (module docstring).

    ``result["arms"][arm][measure]`` for each measure of :data:`RELIANCE_MEASURES` holds
    ``estimate``, ``ci_low``/``ci_high`` (two-way ``t`` interval), ``se``, ``df``,
    ``bootstrap`` (``ci_low``, ``ci_high``, ``se``, ``n_resamples_valid``), ``n_responses``
    (rows averaged) and ``n_participants``; ``result["arms"][arm]["model_accuracy"]`` is the
    model's accuracy on the verdicts' items (the trust gap's reference). ``result["effects"][arm]
    [measure]`` holds the same interval fields for ``value(arm) − value(baseline)`` (no baseline
    or no baseline rows: ``{}``). ``result["data"]``: ``n_responses``, ``n_participants``,
    ``n_items``, ``share_model_wrong`` (of the verdicts). Undefined values are ``None``.
    """
    _check_resamples(n_resamples, confidence_level)
    prepared = verification_prepare(df)
    if prepared.empty:
        raise ValueError("no test-phase verdicts to analyse")
    _check_between_subjects(prepared)
    measures = _measures(prepared)
    arms = tuple(sorted(set(prepared["condition"])))
    # One bootstrap over all measures: blocks (sum of y over its rows, count of its rows) per measure.
    order = _order(prepared)
    base = _data(prepared, np.zeros(len(prepared)), order)
    columns = []
    for y, rows in measures.values():
        columns += [np.where(rows, y, 0.0), rows.astype(np.float64)]
    blocks_unsorted = np.column_stack(columns)
    clusters = _build_clusters(
        arm=base.arm,
        participant=base.participant,
        item_code=base.item_code,
        n_items=len(base.items),
        blocks=blocks_unsorted[order],
        arms=arms,
    )
    totals = _two_way_bootstrap_totals(
        clusters, n_items=len(base.items), n_resamples=int(n_resamples), seed=seed, stream=_STREAM_VERIFICATION
    )
    points = {name: clusters[name].totals for name in arms}
    datas = {measure: _data(prepared, np.where(rows, y, 0.0), order) for measure, (y, rows) in measures.items()}
    rows_sorted = {measure: rows[order] for measure, (_, rows) in measures.items()}

    def ratio(measure_index: int, block_totals: np.ndarray) -> np.ndarray:
        return _ratio(block_totals[2 * measure_index], block_totals[2 * measure_index + 1])

    def interval(measure: str, estimate: float, variance, replicates: np.ndarray, *, effect: bool) -> dict:
        if measure in _PROPORTIONS and not effect:
            return dict(_interval(estimate, variance, replicates, confidence_level=confidence_level, logit=True))
        bound = 2.0 if measure == "trust_gap" and effect else 1.0
        return _linear_interval(estimate, variance, replicates, confidence_level=confidence_level, bound=bound)

    out_arms: dict[str, dict] = {}
    for name in arms:
        in_arm = base.arm == name
        arm_out: dict[str, dict] = {}
        for k, measure in enumerate(RELIANCE_MEASURES):
            rows = in_arm & rows_sorted[measure]
            variance = _difference_variance(datas[measure], rows) if rows.any() else (None, None)
            result = interval(measure, float(ratio(k, points[name])), variance, ratio(k, totals[name]), effect=False)
            result["n_responses"] = int(rows.sum())
            result["n_participants"] = int(len(np.unique(base.participant[rows])))
            arm_out[measure] = result
        arm_out["model_accuracy"] = _float(base.model_correct[in_arm].mean()) if in_arm.any() else None
        out_arms[name] = arm_out

    effects: dict[str, dict] = {}
    if baseline is not None and baseline in arms:
        in_base = base.arm == baseline
        for name in arms:
            if name == baseline:
                continue
            in_arm = base.arm == name
            arm_out = {}
            for k, measure in enumerate(RELIANCE_MEASURES):
                rows_a, rows_b = in_arm & rows_sorted[measure], in_base & rows_sorted[measure]
                variance = (None, None)
                if rows_a.any() and rows_b.any():
                    variance = _difference_variance(datas[measure], rows_a, rows_b)
                estimate = float(ratio(k, points[name]) - ratio(k, points[baseline]))
                replicates = ratio(k, totals[name]) - ratio(k, totals[baseline])
                arm_out[measure] = interval(measure, estimate, variance, replicates, effect=True)
            effects[name] = arm_out
    return {
        "arms": out_arms,
        "effects": effects,
        "baseline": baseline,
        "data": {
            "n_responses": int(len(prepared)),
            "n_participants": int(prepared["participant"].nunique()),
            "n_items": int(prepared["item"].nunique()),
            "share_model_wrong": float((~prepared["model_right"]).mean()),
        },
    }
