"""``analyze``: every statistic of a study, with and without the pre-registered exclusions."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Final

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
from .chance import _chance_levels
from .correlation import metric_human_correlation
from .exclusions import _apply, exclusion_rules_validate, exclusions_summary, participant_quality
from .mixed import _mixed_model
from .responses import responses_prepare
from .sequential import sequential_monitor
from .timing import _time_on_task

__all__ = ["analyze", "jsonable", "report_flatten", "study_report"]

SCHEMA_VERSION = 2


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


# Below these counts a two-way interval rests on few clusters: it is still computed (with
# t quantiles on few degrees of freedom), and the report says so.
FEW_ITEMS: Final = 20
FEW_PARTICIPANTS_PER_ARM: Final = 20
MIXED_MODEL_MAX_RESPONSES: Final = 20_000


def _design_warnings(data: dict) -> list[str]:
    warnings = []
    if 0 < data["n_items"] < FEW_ITEMS:
        warnings.append(
            f"only {data['n_items']} items (fewer than {FEW_ITEMS}): intervals rest on few item clusters "
            f"and are wide, so read them with care"
        )
    for arm, count in data["n_participants_per_arm"].items():
        if count < FEW_PARTICIPANTS_PER_ARM:
            warnings.append(
                f"arm {arm!r} has only {count} participants (fewer than {FEW_PARTICIPANTS_PER_ARM}): its "
                f"intervals rest on few participant clusters"
            )
    return warnings


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
    mixed_model: bool,
    mixed_model_max_responses: int,
) -> dict:
    """One section; each statistic gives its result or, in ``unavailable``, its own reason."""
    data = _data_summary(prepared, full=full)
    section: dict[str, Any] = {
        "settings": {
            "baseline": baseline,
            "seed": seed,
            "n_resamples": n_resamples,
            "n_permutations": n_permutations,
            "confidence_level": confidence_level,
            "exclusions_applied": exclusions_applied,
            "mixed_model": mixed_model,
            "schema_version": SCHEMA_VERSION,
        },
        "data": data,
    }
    unavailable: dict[str, str] = {}
    after = " after exclusions" if exclusions_applied else ""

    def attempt(key: str, compute: Callable[[], Any], empty: Any) -> None:
        try:
            section[key] = compute()
        except ValueError as exc:
            section[key] = empty
            unavailable[key] = str(exc)

    boot = None
    try:
        boot = _accuracy_bootstrap(prepared, seed=seed, n_resamples=n_resamples)
    except ValueError as exc:
        unavailable["simulation_accuracy"] = str(exc)
    section["simulation_accuracy"] = {} if boot is None else _accuracy_result(boot, confidence_level=confidence_level)
    if boot is None:
        section["effects"] = {}
        unavailable["effects"] = unavailable["simulation_accuracy"]
    elif baseline not in boot.data.arms:
        section["effects"] = {}
        unavailable["effects"] = (
            f"baseline arm {baseline!r} has no test-phase responses{after}; arms: {list(boot.data.arms)}"
        )
    else:
        attempt(
            "effects",
            lambda: _effects_result(
                boot, baseline=baseline, seed=seed, n_permutations=n_permutations, confidence_level=confidence_level
            ),
            {},
        )
    attempt(
        "gain",
        lambda: _gain_result(prepared, seed=seed, n_resamples=n_resamples, confidence_level=confidence_level),
        {},
    )
    attempt("agreement", lambda: _agreement(prepared), {})
    attempt("calibration", lambda: _calibration(prepared), None)
    attempt("chance", lambda: _chance_levels(prepared), None)
    attempt("time_on_task", lambda: _time_on_task(prepared), None)
    if not mixed_model:
        section["mixed_model"] = None
        unavailable["mixed_model"] = "not requested"
    elif data["n_test_responses"] > mixed_model_max_responses:
        section["mixed_model"] = None
        unavailable["mixed_model"] = (
            f"{data['n_test_responses']:,} answers: more than the {mixed_model_max_responses:,} fitted on the fly"
        )
    else:
        attempt(
            "mixed_model",
            lambda: _mixed_model(prepared, baseline=baseline, seed=seed, confidence_level=confidence_level),
            None,
        )
    warnings = _design_warnings(data)
    if section["mixed_model"] is not None and not section["mixed_model"]["converged"]:
        warnings.append("the mixed model's fit did not converge; its numbers are approximate")
    for arm, found in section["agreement"].items():
        if "dawid_skene" in found.get("reasons", {}):
            warnings.append(f"Dawid–Skene in arm {arm!r}: {found['reasons']['dawid_skene']}")
    section["warnings"] = warnings
    section["unavailable"] = unavailable
    return section


def analyze(
    df: pd.DataFrame,
    *,
    baseline: str,
    seed: int,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    confidence_level: float = 0.95,
    mixed_model: bool = True,
    mixed_model_max_responses: int = MIXED_MODEL_MAX_RESPONSES,
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
    * ``chance``: :func:`~annotations.analysis.chance_levels` (per-item chance, accuracy above
      chance and chance-corrected, per arm and pooled);
    * ``time_on_task``: :func:`~annotations.analysis.time_on_task`;
    * ``mixed_model``: :func:`~annotations.analysis.mixed_model` (``correct ~ arm + (1 |
      participant) + (1 | item)``), when ``mixed_model`` is true and the section has at most
      ``mixed_model_max_responses`` test answers;
    * ``warnings``: what a reader should know before trusting the intervals (fewer than 20 items,
      fewer than 20 participants in an arm, a fit that did not converge);
    * ``unavailable``: ``{statistic: reason}`` for each statistic that could not be computed (e.g.
      no baseline participant left after the exclusions); that statistic is then ``{}`` (or
      ``None``) and every other one is still reported.

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
        mixed_model=bool(mixed_model),
        mixed_model_max_responses=int(mixed_model_max_responses),
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
    mixed_model: bool = True,
    sequential: dict | None = None,
    complete_after: int = 1,
) -> dict:
    """Everything the dashboard, ``manage.py analyze`` and the API report, from data alone.

    * ``exclusion_rules`` (``Study.exclusion_rules``; see ``exclusions``) given: the ``excluded``
      flags are recomputed from the rows with them (``default_fast_rt_ms`` is the study's
      ``min_rt_ms``). ``None``: the frame's own ``excluded`` column is used as is.
    * ``analysis``: :func:`analyze` (``{"all", "after_exclusions"}``).
    * ``exclusions``: :func:`~annotations.analysis.exclusions.exclusions_summary` of the
      per-participant quality table; always there, whatever the analysis could compute.
    * ``metrics_vs_human``: with an item frame (the items export),
      :func:`~annotations.analysis.correlation.metric_human_correlation`; else ``None``.
    * ``sequential``: with a plan (``Study.sequential_monitoring``),
      :func:`~annotations.analysis.sequential.sequential_monitor` on the rows after the
      exclusions, counting a participant once they have ``complete_after`` test answers (the
      study's items per participant); ``{"plan", "unavailable": reason}`` if it cannot be
      computed yet; ``None`` without a plan.

    Run on the responses export alone (``load_responses_csv``), plus the items export for
    ``metrics_vs_human``, it gives exactly the numbers the service computed from its database.
    """
    rules = exclusion_rules_validate(exclusion_rules, default_fast_rt_ms=default_fast_rt_ms)
    quality = participant_quality(responses, rules=rules)
    frame = responses if exclusion_rules is None else _apply(responses, quality)
    # the flags analyze() applies (the rules' when given, else the frame's own column)
    flagged = responses_prepare(frame).groupby("participant", sort=True)["excluded"].any()
    quality["excluded"] = quality["participant"].map(flagged).fillna(False).astype(bool)
    monitoring = None
    if sequential:
        try:
            monitoring = sequential_monitor(frame, baseline=baseline, plan=sequential, complete_after=complete_after)
        except ValueError as exc:
            monitoring = {"plan": dict(sequential), "unavailable": str(exc)}
    return jsonable(
        {
            "analysis": analyze(
                frame,
                baseline=baseline,
                seed=seed,
                n_resamples=n_resamples,
                n_permutations=n_permutations,
                confidence_level=confidence_level,
                mixed_model=mixed_model,
            ),
            "exclusions": exclusions_summary(quality, rules=rules),
            "metrics_vs_human": None if items is None else metric_human_correlation(frame, items, baseline=baseline),
            "sequential": monitoring,
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
