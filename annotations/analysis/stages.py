"""Cumulative explanation stages (MultiViz's simulation study): accuracy, confidence and
agreement per stage, and the increment from each stage to the next.

A staged study has one arm per stage, in order: a no-explanation baseline, then ``U``
(unimodal importance), ``U+C`` (+ cross-modal interactions), ``U+C+R`` (+ representations),
``U+C+R+P`` (+ prediction). Arms are between-subjects, so an increment is the difference of
two arms that share the items:

* **accuracy** (simulation accuracy, ``accuracy.py``): each stage's accuracy with its two-way
  interval, and each increment as :func:`~annotations.analysis.accuracy.arm_effects` of the
  later stage against the earlier one as its baseline (two-way moment interval, permutation
  ``p``), overall and split by whether the model was right;
* **confidence** (1–5, test answers): each stage's mean over its participants' means, and the
  increment with Welch's ``t`` interval on participant means (a participant is the unit that is
  independent between arms; items shared by the arms make this slightly conservative). Both
  intervals are clipped to what the quantity can be — a mean in [1, 5], a difference of two
  means in [−4, 4] — and flagged ``clipped``: with few participants a ``t`` interval reaches past
  the scale, and no value out there is plausible;
* **agreement** (``agreement.py``): Krippendorff's α on guesses and on confidence per stage, and
  the increment of α on guesses as a point estimate (no interval: α's sampling distribution
  over a crossed design is not something a two-arm formula gives).

No Django.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .accuracy import arm_effects, simulation_accuracy
from .agreement import agreement
from .calibration import CONFIDENCE_LEVELS
from .responses import responses_prepare

__all__ = ["MULTIVIZ_STAGES", "stage_report"]

#: The arms of the MultiViz simulation study, in stage order, and the views each shows.
MULTIVIZ_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baseline", ()),
    ("U", ("heatmap", "tokens")),
    ("U+C", ("heatmap", "tokens", "interaction", "top_pairs")),
    ("U+C+R", ("heatmap", "tokens", "interaction", "top_pairs", "features")),
    ("U+C+R+P", ("heatmap", "tokens", "interaction", "top_pairs", "features", "prediction")),
)


#: What a mean confidence can be, and a difference of two of them.
CONFIDENCE_BOUNDS: tuple[float, float] = (float(min(CONFIDENCE_LEVELS)), float(max(CONFIDENCE_LEVELS)))
CONFIDENCE_DIFFERENCE_BOUNDS: tuple[float, float] = (
    CONFIDENCE_BOUNDS[0] - CONFIDENCE_BOUNDS[1],
    CONFIDENCE_BOUNDS[1] - CONFIDENCE_BOUNDS[0],
)


def _clipped(out: dict, *, half: float, bounds: tuple[float, float]) -> dict:
    """``estimate ± half`` clipped to ``bounds``; ``clipped`` says whether either end was cut."""
    low, high = out["estimate"] - half, out["estimate"] + half
    out["ci_low"], out["ci_high"] = max(low, bounds[0]), min(high, bounds[1])
    out["clipped"] = bool(low < bounds[0] or high > bounds[1])
    return out


def _participant_means(test: pd.DataFrame, arm: str) -> np.ndarray:
    rows = test[(test["condition"] == arm) & test["confidence"].notna()]
    return rows.groupby("participant", sort=True)["confidence"].mean().to_numpy(dtype=np.float64)


def _mean_interval(values: np.ndarray, confidence_level: float) -> dict:
    n = int(values.size)
    out: dict = {
        "estimate": float(values.mean()) if n else None,
        "ci_low": None,
        "ci_high": None,
        "clipped": False,
        "n_participants": n,
    }
    if n >= 2:
        se = float(values.std(ddof=1) / np.sqrt(n))
        half = float(stats.t.ppf(0.5 + confidence_level / 2, n - 1)) * se
        _clipped(out, half=half, bounds=CONFIDENCE_BOUNDS)
    return out


def _welch(later: np.ndarray, earlier: np.ndarray, confidence_level: float) -> dict:
    out: dict = {"estimate": None, "ci_low": None, "ci_high": None, "clipped": False}
    if later.size and earlier.size:
        out["estimate"] = float(later.mean() - earlier.mean())
    if later.size >= 2 and earlier.size >= 2:
        va, vb = later.var(ddof=1) / later.size, earlier.var(ddof=1) / earlier.size
        se = float(np.sqrt(va + vb))
        if se > 0:
            df = (va + vb) ** 2 / (va**2 / (later.size - 1) + vb**2 / (earlier.size - 1))
            half = float(stats.t.ppf(0.5 + confidence_level / 2, df)) * se
        else:
            half = 0.0
        _clipped(out, half=half, bounds=CONFIDENCE_DIFFERENCE_BOUNDS)
    return out


def stage_report(
    df: pd.DataFrame,
    *,
    stages: Sequence[str],
    seed: int,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    confidence_level: float = 0.95,
) -> dict:
    """Per stage and per consecutive pair of stages, over test-phase answers.

    Args:
        df: the responses export (one study).
        stages: arm names in stage order (the first is usually the baseline). Stages with no
            test answers are reported empty and skipped in the increments.
        seed, n_resamples, n_permutations, confidence_level: as for ``arm_effects``.

    Returns:
        ``{"stages": [{"arm", "accuracy", "confidence", "agreement"}],
        "increments": [{"from", "to", "accuracy", "confidence", "agreement"}],
        "unavailable": {what: reason}}``; ``accuracy`` per stage is
        ``simulation_accuracy[arm]`` (subsets ``all``, ``model_correct``, ``model_incorrect``),
        per increment ``arm_effects`` of ``to`` against ``from``.
    """
    prepared = responses_prepare(df)
    test = prepared[(prepared["phase"] == "test") & prepared["correct_simulation"].notna()]
    present = [s for s in stages if (test["condition"] == s).any()]
    unavailable: dict[str, str] = {}
    missing = [s for s in stages if s not in present]
    if missing:
        unavailable["stages"] = f"no test answers yet in {', '.join(missing)}"
    accuracy = (
        simulation_accuracy(prepared, seed=seed, n_resamples=n_resamples, confidence_level=confidence_level)
        if present
        else {}
    )
    agree = agreement(prepared) if present else {}
    out_stages = []
    for arm in stages:
        a = agree.get(arm, {})
        out_stages.append(
            {
                "arm": arm,
                "accuracy": accuracy.get(arm),
                "confidence": _mean_interval(_participant_means(test, arm), confidence_level),
                "agreement": {
                    "alpha_nominal_guess": a.get("alpha_nominal_guess"),
                    "alpha_ordinal_confidence": a.get("alpha_ordinal_confidence"),
                    "fleiss_kappa": a.get("fleiss_kappa"),
                }
                if a
                else None,
            }
        )
    increments = []
    for earlier, later in zip(present, present[1:]):
        pair = prepared[prepared["condition"].isin([earlier, later])]
        effect = arm_effects(
            pair,
            baseline=earlier,
            seed=seed,
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            confidence_level=confidence_level,
        )[later]
        alpha_a = (agree.get(later) or {}).get("alpha_nominal_guess")
        alpha_b = (agree.get(earlier) or {}).get("alpha_nominal_guess")
        increments.append(
            {
                "from": earlier,
                "to": later,
                "accuracy": effect,
                "confidence": _welch(
                    _participant_means(test, later), _participant_means(test, earlier), confidence_level
                ),
                "agreement": {"alpha_nominal_guess": None if alpha_a is None or alpha_b is None else alpha_a - alpha_b},
            }
        )
    return {"stages": out_stages, "increments": increments, "unavailable": unavailable}
