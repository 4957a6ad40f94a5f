"""``analyze``: every statistic of a study, with and without the pre-registered exclusions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .accuracy import (
    _accuracy_bootstrap,
    _accuracy_result,
    _check_resamples,
    _effects_result,
    _gain_result,
)
from .agreement import _agreement
from .calibration import _calibration
from .correlation import metric_human_correlation
from .exclusions import _apply, exclusion_rules_validate, exclusions_summary, participant_quality
from .responses import responses_prepare
from .timing import _time_on_task

__all__ = ["analyze", "jsonable", "report_flatten", "study_report"]

SCHEMA_VERSION = 1


def jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python types and non-finite floats into ``None``."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [jsonable(item) for item in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _data_summary(prepared: pd.DataFrame, *, full: pd.DataFrame) -> dict:
    test = prepared[prepared["phase"] == "test"]
    flagged = full[full["excluded"]]
    participants_flagged = set(flagged["participant"])
    partially = 0
    if participants_flagged:
        per_participant = full[full["participant"].isin(participants_flagged)].groupby("participant")["excluded"].all()
        partially = int((~per_participant).sum())
    return {
        "n_rows": int(len(prepared)),
        "n_rows_by_phase": {str(k): int(v) for k, v in prepared["phase"].value_counts(sort=False).sort_index().items()},
        "n_test_responses": int(test["correct_simulation"].notna().sum()),
        "n_test_rows_missing_correct_simulation": int(test["correct_simulation"].isna().sum()),
        "n_participants": int(test["participant"].nunique()),
        "n_items": int(test["item"].nunique()),
        "arms": sorted(str(arm) for arm in test["condition"].unique()),
        "n_participants_per_arm": {
            str(arm): int(n) for arm, n in test.groupby("condition", sort=True)["participant"].nunique().items()
        },
        "n_excluded_rows_in_input": int(full["excluded"].sum()),
        "n_excluded_participants_in_input": len(participants_flagged),
        "n_participants_partially_excluded_in_input": partially,
    }


def _section(
    prepared: pd.DataFrame,
    *,
    full: pd.DataFrame,
    baseline: str,
    seed: int,
    n_resamples: int,
    n_permutations: int,
    confidence_level: float,
    exclusions_applied: bool,
) -> dict:
    boot = _accuracy_bootstrap(prepared, seed=seed, n_resamples=n_resamples)
    if baseline not in boot.data.arms:
        raise ValueError(
            f"baseline arm {baseline!r} has no test-phase responses"
            f"{' after exclusions' if exclusions_applied else ''}; arms: {list(boot.data.arms)}"
        )
    return {
        "settings": {
            "baseline": baseline,
            "seed": seed,
            "n_resamples": n_resamples,
            "n_permutations": n_permutations,
            "confidence_level": confidence_level,
            "exclusions_applied": exclusions_applied,
            "schema_version": SCHEMA_VERSION,
        },
        "data": _data_summary(prepared, full=full),
        "simulation_accuracy": _accuracy_result(boot, confidence_level=confidence_level),
        "effects": _effects_result(
            boot, baseline=baseline, seed=seed, n_permutations=n_permutations, confidence_level=confidence_level
        ),
        "gain": _gain_result(prepared, seed=seed, n_resamples=n_resamples, confidence_level=confidence_level),
        "agreement": _agreement(prepared),
        "calibration": _calibration(prepared),
        "time_on_task": _time_on_task(prepared),
    }


def analyze(
    df: pd.DataFrame,
    *,
    baseline: str,
    seed: int,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    confidence_level: float = 0.95,
) -> dict:
    """Run every statistic twice and return ``{"all": section, "after_exclusions": section}``.

    ``"all"`` uses every row; ``"after_exclusions"`` drops the rows whose ``excluded`` flag is true
    (the service flags all rows of a participant excluded under the pre-registered rules; an absent
    column or an empty cell means not excluded). Each section is computed from scratch with the same
    ``seed`` and holds:

    * ``settings``: the arguments, ``exclusions_applied`` and ``schema_version``;
    * ``data``: row counts by phase, test responses, participants, items, arms, participants per
      arm and the exclusion flags found in the input;
    * ``simulation_accuracy``: :func:`~annotations.analysis.simulation_accuracy`;
    * ``effects``: :func:`~annotations.analysis.arm_effects` (each arm vs ``baseline``);
    * ``gain``: :func:`~annotations.analysis.simulation_gain` (``{}`` without pretest rows);
    * ``agreement``: :func:`~annotations.analysis.agreement`;
    * ``calibration``: :func:`~annotations.analysis.calibration`;
    * ``time_on_task``: :func:`~annotations.analysis.time_on_task`.

    The public functions called on their own with the same arguments return the same numbers. The
    result contains only dicts, lists, str, int, float (full precision, never NaN) and ``None``, so
    ``json.dumps(result, allow_nan=False)`` works. It depends only on the data's values, not on
    row order or on the frame's dtypes (see ``responses_prepare``); rows from several studies are
    refused.
    """
    _check_resamples(n_resamples, confidence_level)
    if int(n_permutations) < 1:
        raise ValueError("n_permutations must be >= 1")
    prepared = responses_prepare(df)
    studies = prepared["study"].dropna().unique()
    if len(studies) > 1:
        raise ValueError(f"analyze one study at a time; found {len(studies)}")
    options = dict(
        baseline=baseline,
        seed=int(seed),
        n_resamples=int(n_resamples),
        n_permutations=int(n_permutations),
        confidence_level=float(confidence_level),
    )
    kept = prepared[~prepared["excluded"]].reset_index(drop=True)
    return jsonable(
        {
            "all": _section(prepared, full=prepared, exclusions_applied=False, **options),
            "after_exclusions": _section(kept, full=prepared, exclusions_applied=True, **options),
        }
    )


def study_report(
    responses: pd.DataFrame,
    *,
    baseline: str,
    seed: int,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    confidence_level: float = 0.95,
    exclusion_rules: dict | None = None,
    default_fast_rt_ms: float = 0.0,
    items: pd.DataFrame | None = None,
) -> dict:
    """Everything the dashboard, ``manage.py analyze`` and the API report, from data alone.

    * ``exclusion_rules`` (``Study.exclusion_rules``; see ``exclusions``) given: the ``excluded``
      flags are recomputed from the rows with them (``default_fast_rt_ms`` is the study's
      ``min_rt_ms``). ``None``: the frame's own ``excluded`` column is used as is.
    * ``analysis``: :func:`analyze` (``{"all", "after_exclusions"}``).
    * ``exclusions``: :func:`~annotations.analysis.exclusions.exclusions_summary` of the
      per-participant quality table.
    * ``metrics_vs_human``: with an item frame (the items export),
      :func:`~annotations.analysis.correlation.metric_human_correlation`; else ``None``.

    Run on the responses export alone (``load_responses_csv``), plus the items export for
    ``metrics_vs_human``, it gives exactly the numbers the service computed from its database.
    """
    rules = exclusion_rules_validate(exclusion_rules, default_fast_rt_ms=default_fast_rt_ms)
    quality = participant_quality(responses, rules=rules)
    frame = responses if exclusion_rules is None else _apply(responses, quality)
    # the flags analyze() applies (the rules' when given, else the frame's own column)
    flagged = responses_prepare(frame).groupby("participant", sort=True)["excluded"].any()
    quality["excluded"] = quality["participant"].map(flagged).fillna(False).astype(bool)
    return jsonable(
        {
            "analysis": analyze(
                frame,
                baseline=baseline,
                seed=seed,
                n_resamples=n_resamples,
                n_permutations=n_permutations,
                confidence_level=confidence_level,
            ),
            "exclusions": exclusions_summary(quality, rules=rules),
            "metrics_vs_human": None
            if items is None
            else metric_human_correlation(frame, items, baseline=baseline),
        }
    )


# Per-item and per-rater tables inside Dawid-Skene results: they belong to the item and
# participant exports, not to a summary of numbers.
_FLATTEN_SKIP = frozenset({"consensus", "majority_vote", "rater_accuracy"})


def report_flatten(report: Any, *, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` for every scalar of a JSON-able report, depth first in key order.

    ``key`` joins the path with ``.``; each component is percent-encoded for ``%`` and ``.`` (so
    an arm named ``a.b`` stays one component) and list positions are numbers, e.g.
    ``analysis.after_exclusions.simulation_accuracy.heatmap.all.ci_low`` or
    ``analysis.all.calibration.pooled.levels.4.accuracy``. Lists of scalars are one value, joined
    by ``;``. Dawid–Skene's per-item ``consensus``/``majority_vote`` and per-rater
    ``rater_accuracy`` are left out. ``None`` stays ``None`` (an empty CSV cell).
    """
    if isinstance(report, dict):
        for key in sorted(report, key=str):
            if str(key) in _FLATTEN_SKIP:
                continue
            component = str(key).replace("%", "%25").replace(".", "%2E")
            yield from report_flatten(report[key], prefix=(*prefix, component))
    elif isinstance(report, (list, tuple)):
        if all(not isinstance(value, (dict, list, tuple)) for value in report):
            yield ".".join(prefix), ";".join("" if value is None else str(value) for value in report)
        else:
            for index, value in enumerate(report):
                yield from report_flatten(value, prefix=(*prefix, str(index)))
    else:
        yield ".".join(prefix), report
