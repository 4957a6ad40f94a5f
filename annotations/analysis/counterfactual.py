"""Counterfactual simulation (Doshi-Velez & Kim 2017; Hase & Bansal, ACL 2020): a participant
sees an input, the model's answer and (per arm) its explanation, then an edited input, and
predicts the model's answer on the edited input.

Definitions
-----------
A row is one answer about an edited input; ``correct`` = ``guess == edit_prediction`` (the
model's answer on the edit, not the gold label). Attention checks, rows without an edit answer
and (in the "after exclusions" section) excluded participants are left out.

* **counterfactual simulation accuracy** of an arm = the mean of ``correct`` over its test-phase
  rows, with the two-way (participant × item) interval of :mod:`.accuracy` on the logit scale
  (moment variance, Student's ``t`` with Satterthwaite's df) and the two-way product bootstrap's
  percentile interval (stream ``SeedSequence([seed, 5, ...])``);
* **effect** of an arm = its accuracy minus the baseline arm's, with the two-way interval of the
  difference (participants in each arm, items shared) and the bootstrap interval;
* **pre→post change** of an arm (Hase & Bansal's design: the same items answered first in the
  warm-up, without explanations) = test accuracy − pre-test accuracy over the arm's participants
  with both; its interval is the bootstrap's (a participant's pre and post answers are resampled
  together, items shared), since the two means share participants;
* **change effect** = an arm's change minus the baseline's change (difference in differences:
  the explanation's gain over what repetition alone gives), with the bootstrap interval.

Everything is reported for all edits together (``"all"``) and per edit kind
(``modality_baseline``, ``top_k_removed``, ``word_swap``, ``adapter``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from .accuracy import (
    _bootstrap_interval,
    _build_clusters,
    _check_between_subjects,
    _check_resamples,
    _difference_variance,
    _float,
    _interval,
    _ratio,
    _TestData,
    _two_way_bootstrap_totals,
)
from .responses import _as_bool, sorted_codes

__all__ = ["counterfactual_prepare", "counterfactual_simulation"]

_STREAM_COUNTERFACTUAL: Final = 5
_COLUMNS: Final = ("condition", "participant", "item", "phase", "guess", "edit_prediction", "edit_kind")


def counterfactual_prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The pre-test and test answers about edits: ``condition``, ``participant``, ``item``,
    ``phase``, ``edit_kind`` (strings) and ``correct`` (bool). Needs the columns of
    ``_COLUMNS``; rows with a true ``is_attention_check`` or ``excluded`` are left out when those
    columns exist, and rows without an ``edit_prediction``. Raises ``ValueError`` on a missing
    column."""
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"counterfactual frame lacks columns {missing}")
    df = df.reset_index(drop=True)
    phase = df["phase"].astype(str)
    keep = phase.isin(["test", "pretest"]).to_numpy().copy()
    for flag in ("is_attention_check", "excluded"):
        if flag in df.columns:
            keep &= ~_as_bool(df[flag], column=flag, missing=False).to_numpy(dtype=bool)
    edit = df["edit_prediction"]
    keep &= (edit.notna() & (edit.astype(str) != "")).to_numpy()
    rows = df[keep]
    return pd.DataFrame(
        {
            "condition": rows["condition"].astype(str).to_numpy(),
            "participant": rows["participant"].astype(str).to_numpy(),
            "item": rows["item"].astype(str).to_numpy(),
            "phase": rows["phase"].astype(str).to_numpy(),
            "edit_kind": rows["edit_kind"].astype(str).to_numpy(),
            "correct": (rows["guess"].astype(str) == rows["edit_prediction"].astype(str)).to_numpy(),
        }
    )


def _data(rows: pd.DataFrame, y: np.ndarray, items: np.ndarray, item_code: np.ndarray) -> _TestData:
    _, participant_code = sorted_codes(rows["participant"])
    order = np.lexsort((np.arange(len(rows)), item_code, participant_code))
    arm = rows["condition"].to_numpy(dtype=object)
    return _TestData(
        arms=tuple(sorted(set(arm))),
        items=items,
        arm=arm[order],
        participant=participant_code[order],
        item_code=item_code[order],
        correct=np.asarray(y, dtype=np.float64)[order],
        model_correct=np.zeros(len(rows), dtype=bool),
    )


def _section(rows: pd.DataFrame, *, baseline: str | None, seed: int, n_resamples: int, confidence_level: float):
    """Accuracy, effects and pre→post changes over ``rows`` (one edit kind, or all)."""
    arms = tuple(sorted(set(rows["condition"])))
    items, item_code = sorted_codes(rows["item"])
    _, participant_code = sorted_codes(rows["participant"])
    correct = rows["correct"].to_numpy(dtype=np.float64)
    post = (rows["phase"] == "test").to_numpy()
    pre = ~post
    # Pairs: a participant's pre-test counts only where they also answered in the test phase.
    with_post = set(rows.loc[post, "participant"])
    paired_pre = pre & rows["participant"].isin(with_post).to_numpy()
    with_pre = set(rows.loc[paired_pre, "participant"])
    paired_post = post & rows["participant"].isin(with_pre).to_numpy()
    blocks = np.column_stack(
        [correct * post, post, correct * paired_post, paired_post, correct * paired_pre, paired_pre]
    ).astype(np.float64)
    order = np.lexsort((np.arange(len(rows)), item_code, participant_code))
    arm_all = rows["condition"].to_numpy(dtype=object)
    clusters = _build_clusters(
        arm=arm_all[order],
        participant=participant_code[order],
        item_code=item_code[order],
        n_items=len(items),
        blocks=blocks[order],
        arms=arms,
    )
    totals = _two_way_bootstrap_totals(
        clusters, n_items=len(items), n_resamples=int(n_resamples), seed=seed, stream=_STREAM_COUNTERFACTUAL
    )
    post_rows = rows[post]
    data = _data(post_rows, correct[post], items, item_code[post]) if post.any() else None

    def accuracy(t):
        return _ratio(t[0], t[1])

    def change(t):
        return _ratio(t[2], t[3]) - _ratio(t[4], t[5])

    out_arms, effects = {}, {}
    for name in arms:
        point = clusters[name].totals
        in_arm = data.arm == name if data is not None else np.zeros(0, dtype=bool)
        variance = _difference_variance(data, in_arm) if data is not None and in_arm.any() else (None, None)
        result = dict(
            _interval(
                float(accuracy(point)), variance, accuracy(totals[name]), confidence_level=confidence_level, logit=True
            )
        )
        result["n_responses"] = int(point[1])
        result["n_participants"] = int(post_rows.loc[post_rows["condition"] == name, "participant"].nunique())
        estimate = float(change(point))
        out_arms[name] = {
            "accuracy": result,
            "pretest_accuracy": _float(float(_ratio(point[4], point[5]))),
            "pre_post_change": _bootstrapped(estimate, change(totals[name]), confidence_level),
            "n_pretest_responses": int(point[5]),
        }
    if baseline is not None and baseline in arms:
        in_base = data.arm == baseline if data is not None else None
        for name in arms:
            if name == baseline:
                continue
            in_arm = data.arm == name if data is not None else None
            variance = (None, None)
            if data is not None and in_arm.any() and in_base.any():
                variance = _difference_variance(data, in_arm, in_base)
            estimate = float(accuracy(clusters[name].totals) - accuracy(clusters[baseline].totals))
            replicates = accuracy(totals[name]) - accuracy(totals[baseline])
            effect = dict(_interval(estimate, variance, replicates, confidence_level=confidence_level))
            if effect["ci_low"] is not None:
                effect["ci_low"], effect["ci_high"] = max(effect["ci_low"], -1.0), min(effect["ci_high"], 1.0)
            change_estimate = float(change(clusters[name].totals) - change(clusters[baseline].totals))
            change_replicates = change(totals[name]) - change(totals[baseline])
            effects[name] = {
                "accuracy": effect,
                "pre_post_change": _bootstrapped(change_estimate, change_replicates, confidence_level),
            }
    return {
        "arms": out_arms,
        "effects": effects,
        "n_responses": int(post.sum()),
        "n_pretest_responses": int(pre.sum()),
        "n_items": int(rows.loc[post, "item"].nunique()),
    }


def _bootstrapped(estimate: float, replicates: np.ndarray, confidence_level: float) -> dict:
    """An estimate with the bootstrap's percentile interval as its interval."""
    boot = _bootstrap_interval(estimate, replicates, confidence_level=confidence_level)
    return {
        "estimate": _float(estimate),
        "ci_low": boot["ci_low"],
        "ci_high": boot["ci_high"],
        "se": boot["se"],
        "n_resamples_valid": boot["n_resamples_valid"],
    }


def counterfactual_simulation(
    df: pd.DataFrame,
    *,
    baseline: str | None,
    seed: int,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
) -> dict:
    """Counterfactual simulation per arm, against ``baseline`` and against the pre-test, for all
    edits and per edit kind (module docstring).

    ``result["all"]`` and ``result["by_edit_kind"][kind]`` each hold ``arms[arm]``
    (``accuracy``: ``estimate``, ``ci_low``/``ci_high``, ``se``, ``df``, ``bootstrap``,
    ``n_responses``, ``n_participants``; ``pretest_accuracy``; ``pre_post_change``: ``estimate``,
    ``ci_low``/``ci_high`` from the bootstrap; ``n_pretest_responses``), ``effects[arm]``
    (``accuracy``, ``pre_post_change``: arm − baseline), ``n_responses``, ``n_items``. Undefined
    values are ``None``."""
    _check_resamples(n_resamples, confidence_level)
    prepared = counterfactual_prepare(df)
    if not (prepared["phase"] == "test").any():
        raise ValueError("no test-phase answers about edited inputs to analyse")
    _check_between_subjects(prepared)
    options = dict(baseline=baseline, seed=seed, n_resamples=n_resamples, confidence_level=confidence_level)
    by_kind = {
        kind: _section(prepared[prepared["edit_kind"] == kind].reset_index(drop=True), **options)
        for kind in sorted(set(prepared.loc[prepared["phase"] == "test", "edit_kind"]))
    }
    return {"all": _section(prepared, **options), "by_edit_kind": by_kind, "baseline": baseline}
