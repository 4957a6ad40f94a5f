"""The analysis of a study: computed from its database rows, cached by data version.

``study_report_compute`` runs ``annotations.analysis.study_report`` on the frames of
``annotations.selectors.analysis`` — the same rows the CSV exports write — with the study's
baseline arm, seed (``Study.seed`` modulo 2**63, since the bootstrap needs a non-negative seed),
pre-registered exclusion rules and sequential-monitoring plan. The dashboard adds a power card
(``study_power_card``): how many more participants per arm the study needs, simulated from the
mixed model of the data so far. ``study_report_get`` and ``study_dashboard_get`` cache their
result in Django's cache under a key that changes with any response, participant (phase, survey,
finish, exclusion), explanation, prediction or design change (``annotations.selectors.analysis.
study_data_version``), so the API recomputes only when the data moved. The dashboard page
itself never computes: it shows the result ``services.dashboard`` computes in the background.

The cache is whatever ``CACHES`` configures; the default is Django's per-process
``LocMemCache``, so each web process computes and keeps its own copy (no Redis needed). That is
correct, not merely tolerable, because the key itself carries the data version: a process never
serves a report older than the rows it can read, whichever process wrote them. A shared cache
(Redis, memcached) only saves the repeated computation.

The analysis package (numpy, pandas, scipy) is imported inside the functions that run it, so
importing this module — and the URL configuration through the API and dashboard views — stays
light.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.cache import cache

from annotations.models import Study
from annotations.selectors.analysis import (
    study_analysis_settings,
    study_data_version,
    study_items_frame,
    study_participants_table,
    study_responses_frame,
    study_stage_order,
)
from annotations.selectors.answers import study_answer_options
from annotations.services.counterfactual_report import counterfactual_report
from annotations.services.judging import judging_report
from annotations.services.rationales import study_rationale_report
from annotations.services.report_sections import SECTIONS, report_sections
from annotations.study_tasks import COUNTERFACTUAL, RATIONALE, VERIFICATION, study_task

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_RESAMPLES = 1000
DEFAULT_PERMUTATIONS = 1000
# The power card: simulated studies per evaluated sample size (Monte Carlo SE about 0.03 at 0.8),
# and the gain in accuracy assumed when the spec declares no ``effect_of_interest``.
POWER_SIMULATIONS = 200
DEFAULT_EFFECT_OF_INTEREST = 0.10
CACHE_SECONDS = 60 * 60


class AnalysisUnavailable(Exception):
    """The study cannot be analysed yet (no responses in the baseline arm, malformed rules…)."""


def _settings(study: Study) -> dict[str, Any]:
    try:
        settings = study_analysis_settings(study=study)
    except ValueError as exc:
        raise AnalysisUnavailable(f"the study's exclusion rules are malformed: {exc}") from exc
    if settings["baseline"] is None:
        raise AnalysisUnavailable("the study has no baseline arm")
    return settings


def _report(
    study: Study,
    settings: dict[str, Any],
    responses: pd.DataFrame,
    items: pd.DataFrame,
    *,
    n_resamples: int,
    n_permutations: int,
) -> dict[str, Any]:
    from annotations.analysis import study_report

    if responses.empty:
        raise AnalysisUnavailable("no responses yet")
    if study.task == VERIFICATION:
        return _verification_report(study, settings, responses, n_resamples=n_resamples)
    if study.task == COUNTERFACTUAL:
        from annotations.analysis.report import jsonable

        report = counterfactual_report(
            study, settings, responses, n_resamples=n_resamples, exclusions=jsonable(_exclusions(responses, settings))
        )
        if "unavailable" in report["counterfactual"]["all"]:
            raise AnalysisUnavailable(report["counterfactual"]["all"]["unavailable"])
        return report
    if study.task == RATIONALE:
        try:
            return study_rationale_report(study=study, settings=settings, n_resamples=n_resamples)
        except ValueError as exc:
            raise AnalysisUnavailable(str(exc)) from exc
    if study_task(study.task).judges_explanations:
        from annotations.analysis.report import jsonable

        report = judging_report(study=study, settings=settings, responses=responses, n_resamples=n_resamples)
        return {**report, "exclusions": jsonable(_exclusions(responses, settings))}
    try:
        report = study_report(
            responses,
            baseline=settings["baseline"],
            seed=settings["seed"],
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            exclusion_rules=settings["exclusion_rules"],
            default_fast_rt_ms=settings["default_fast_rt_ms"],
            items=items,
            sequential=settings["sequential"] or None,
            complete_after=settings["complete_after"],
        )
    except ValueError as exc:
        raise AnalysisUnavailable(str(exc)) from exc
    stages = study_stage_order(study=study)
    if stages:  # cumulative arms (MultiViz's U -> U+C -> ...): accuracy, confidence, agreement by stage
        report["stages"] = _stage_reports(
            responses, settings=settings, stages=stages, n_resamples=n_resamples, n_permutations=n_permutations
        )
    return {
        "study": {
            "id": study.pk,
            "public_id": study.public_id,
            "name": study.name,
            "baseline": settings["baseline"],
            "seed": settings["seed"],
            "n_resamples": int(n_resamples),
            "n_permutations": int(n_permutations),
            "exclusion_rules": settings["exclusion_rules"],
            "min_rt_ms": study.min_rt_ms,
            "explanation_method": study.explanation_method,
            "sequential_monitoring": settings["sequential"],
        },
        # Candidate sets from the item's valid answers: per-item chance, model answers outside them.
        "answer_options": study_answer_options(study=study),
        **report,
    }


def _verification_report(
    study: Study, settings: dict[str, Any], responses: pd.DataFrame, *, n_resamples: int
) -> dict[str, Any]:
    """A verification study's report (``annotations.analysis.verification``): reliance per arm and
    its effects against the baseline, for all participants and after the pre-registered
    exclusions (the export's ``excluded`` flag), with the share of wrong model answers shown."""
    from annotations.analysis.report import jsonable
    from annotations.analysis.verification import verification_reliance

    sections = report_sections(
        responses,
        lambda frame: verification_reliance(
            frame, baseline=settings["baseline"], seed=settings["seed"], n_resamples=n_resamples
        ),
    )
    if "unavailable" in sections["all"]:
        raise AnalysisUnavailable(sections["all"]["unavailable"])
    return {
        "study": {
            "id": study.pk,
            "public_id": study.public_id,
            "name": study.name,
            "task": study.task,
            "baseline": settings["baseline"],
            "seed": settings["seed"],
            "n_resamples": int(n_resamples),
            "n_permutations": 0,
            "exclusion_rules": settings["exclusion_rules"],
            "min_rt_ms": study.min_rt_ms,
            "explanation_method": study.explanation_method,
        },
        "task": study.task,
        "verification": sections,
        "exclusions": jsonable(_exclusions(responses, settings)),
    }


def _exclusions(responses: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered exclusions as the export flags them, one row per participant."""
    from annotations.analysis import exclusion_rules_validate, exclusions_summary

    rules = exclusion_rules_validate(settings["exclusion_rules"], default_fast_rt_ms=settings["default_fast_rt_ms"])
    quality = responses.groupby("participant", sort=True)[["condition", "excluded", "exclusion_reasons"]].first()
    return exclusions_summary(quality.reset_index(), rules=rules)


def _counts(n_resamples: int | None, n_permutations: int | None) -> tuple[int, int]:
    return (
        DEFAULT_RESAMPLES if n_resamples is None else int(n_resamples),
        DEFAULT_PERMUTATIONS if n_permutations is None else int(n_permutations),
    )


def study_report_compute(
    *, study: Study, n_resamples: int | None = None, n_permutations: int | None = None
) -> dict[str, Any]:
    """The full report: ``{"study": {...settings}, "analysis", "exclusions", "metrics_vs_human"}``.
    ``None`` counts mean the defaults (1000 resamples, 1000 permutations).

    Raises :class:`AnalysisUnavailable` with a readable reason when there is nothing to analyse.
    """
    n_resamples, n_permutations = _counts(n_resamples, n_permutations)
    settings = _settings(study)
    return _report(
        study,
        settings,
        study_responses_frame(study=study),
        study_items_frame(study=study),
        n_resamples=n_resamples,
        n_permutations=n_permutations,
    )


def _item_chances(report: dict[str, Any]) -> list[float] | None:
    """The test items' per-item chances, one over each item's candidates (``answer_options``)."""
    sizes = (report.get("answer_options") or {}).get("sizes") or {}
    return [1.0 / int(size) for size, count in sorted(sizes.items()) for _ in range(int(count))] or None


def study_power_card(
    *, report: dict[str, Any], settings: dict[str, Any], items_per_participant: int, n_items: int
) -> dict[str, Any]:
    """About how many more participants per arm give power 0.8 at alpha 0.05 for the spec's
    ``effect_of_interest`` (or ``DEFAULT_EFFECT_OF_INTEREST``, flagged ``assumed``), simulated
    (``annotations.analysis.power``) from the after-exclusions mixed model of the data so far.

    ``{"effect", "effect_assumed", "needed_per_arm", "current_per_arm", "more_per_arm", "power",
    "power_se", "baseline_accuracy", "participant_sd", "item_sd", "n_items",
    "items_per_participant", "n_simulations", "raters_per_item", "capacity", "chance"}``, or
    ``{"unavailable": reason}``. ``capacity`` is ``power_capacity_advice`` for the study's test
    items, raters per item and items per participant, with the power the full design reaches
    when it caps an arm below the number needed; the simulation's guessing floor is each item's
    chance (``answer_options``)."""
    from annotations.analysis import power_from_fit

    section = report["analysis"]["after_exclusions"]
    fit = section.get("mixed_model")
    if fit is None:
        return {
            "unavailable": f"no mixed model to take the variance from: "
            f"{section['unavailable'].get('mixed_model', 'not fitted')}"
        }
    declared = (settings.get("sequential") or {}).get("effect_of_interest")
    effect = float(declared) if declared else DEFAULT_EFFECT_OF_INTEREST
    try:
        found = power_from_fit(
            fit,
            effect=effect,
            n_items=n_items,
            items_per_participant=items_per_participant,
            n_simulations=POWER_SIMULATIONS,
            seed=settings["seed"],
            raters_per_item=settings["raters_per_item"],
            chance=_item_chances(report),
        )
    except ValueError as exc:
        return {"unavailable": str(exc)}
    current = min(section["data"]["n_participants_per_arm"].values(), default=0)
    needed = found["n_participants_per_arm"]
    return {
        "effect": effect,
        "effect_assumed": not declared,
        "needed_per_arm": needed,
        "current_per_arm": current,
        "more_per_arm": None if needed is None else max(0, needed - current),
        "power": found["power"],
        "power_se": found["power_se"],
        "baseline_accuracy": found["baseline_accuracy"],
        "participant_sd": found["participant_sd"],
        "item_sd": found["item_sd"],
        "n_items": found["n_items"],
        "items_per_participant": found["items_per_participant"],
        "n_simulations": found["n_simulations"],
        "max_per_arm": max(point["n_participants_per_arm"] for point in found["curve"]),
        "raters_per_item": settings["raters_per_item"],
        "capacity": found["capacity"],
        "chance": found["chance"],
    }


def study_power_compute(
    *,
    study: Study,
    effect: float | None = None,
    n_items: list[int] | None = None,
    items_per_participant: int | None = None,
    raters_per_item: int | None = None,
    target_power: float = 0.8,
    alpha: float = 0.05,
    n_simulations: int = 400,
) -> dict[str, Any]:
    """Participants per arm needed for ``target_power`` at ``alpha``, with the study's answers so
    far (after its pre-registered exclusions) as the pilot, for each design in ``n_items`` (default:
    the study's own test items) with ``items_per_participant`` answers each and ``raters_per_item``
    places per item and arm (defaults: the study's). ``effect`` defaults to the plan's
    ``effect_of_interest``, else ``DEFAULT_EFFECT_OF_INTEREST``. Each design's ``capacity`` says
    whether it caps an arm below the number needed.

    ``{"study", "effect", "effect_assumed", "current_per_arm", "designs": [power_from_fit
    results]}``. Raises :class:`AnalysisUnavailable` when the pilot cannot be fitted.
    """
    from annotations.analysis import apply_exclusion_rules, exclusion_rules_validate, mixed_model, power_from_fit
    from annotations.analysis.responses import responses_prepare

    settings = _settings(study)
    responses = study_responses_frame(study=study)
    if responses.empty:
        raise AnalysisUnavailable("no responses yet: a pilot needs answers")
    try:
        rules = exclusion_rules_validate(settings["exclusion_rules"], default_fast_rt_ms=settings["default_fast_rt_ms"])
        flagged = apply_exclusion_rules(responses, rules=rules)
        kept = flagged[~responses_prepare(flagged)["excluded"].to_numpy()]
        fit = mixed_model(kept, baseline=settings["baseline"], seed=settings["seed"])
    except ValueError as exc:
        raise AnalysisUnavailable(f"the pilot cannot be fitted: {exc}") from exc
    declared = (settings["sequential"] or {}).get("effect_of_interest")
    assumed = effect is None and not declared
    effect = float(effect if effect is not None else declared or DEFAULT_EFFECT_OF_INTEREST)
    designs = []
    per_participant = int(items_per_participant or settings["complete_after"])
    chance = _item_chances({"answer_options": study_answer_options(study=study)})
    for count in n_items or [settings["n_test_items"] or fit["n_items"]]:
        try:
            designs.append(
                power_from_fit(
                    fit,
                    effect=effect,
                    n_items=int(count),
                    items_per_participant=per_participant,
                    target_power=target_power,
                    alpha=alpha,
                    n_simulations=n_simulations,
                    seed=settings["seed"],
                    raters_per_item=raters_per_item or settings["raters_per_item"],
                    chance=chance,
                )
            )
        except ValueError as exc:
            raise AnalysisUnavailable(str(exc)) from exc
    test = responses_prepare(kept)
    test = test[test["phase"] == "test"]
    per_arm = test.groupby("condition")["participant"].nunique()
    return {
        "study": {"id": study.pk, "name": study.name, "baseline": settings["baseline"]},
        "effect": effect,
        "effect_assumed": assumed,
        "current_per_arm": int(per_arm.min()) if len(per_arm) else 0,
        "designs": designs,
    }


def study_dashboard_compute(*, study: Study) -> dict[str, Any]:
    """What the dashboard shows, from one read of the data: ``report`` (or ``unavailable``, the
    reason), ``participants`` (the participants export's rows), ``points[section][metric][arm]``
    (item-level metric vs accuracy), ``metric_columns`` and ``power`` (:func:`study_power_card`)."""
    from annotations.analysis import apply_exclusion_rules, exclusion_rules_validate, metric_accuracy_points

    out: dict[str, Any] = {"participants": study_participants_table(study=study), "points": {s: {} for s in SECTIONS}}
    n_resamples, n_permutations = _counts(None, None)
    try:
        settings = _settings(study)
        responses = study_responses_frame(study=study)
        items = study_items_frame(study=study)
        out["report"] = _report(
            study, settings, responses, items, n_resamples=n_resamples, n_permutations=n_permutations
        )
    except AnalysisUnavailable as exc:
        out["unavailable"] = str(exc)
        return out
    # no forward accuracy: no metric points, no power card
    if study.task in (VERIFICATION, COUNTERFACTUAL, RATIONALE) or study_task(study.task).judges_explanations:
        return out
    rules = exclusion_rules_validate(settings["exclusion_rules"], default_fast_rt_ms=settings["default_fast_rt_ms"])
    flagged = apply_exclusion_rules(responses, rules=rules)
    for section in SECTIONS:
        out["points"][section] = metric_accuracy_points(
            flagged, items, exclusions_applied=section == "after_exclusions"
        )
    n_items = settings["n_test_items"] or int(out["report"]["analysis"]["all"]["data"]["n_items"])
    out["power"] = study_power_card(
        report=out["report"], settings=settings, n_items=n_items, items_per_participant=settings["complete_after"]
    )
    return out


def _stage_reports(
    responses: pd.DataFrame, *, settings: dict[str, Any], stages: list[str], n_resamples: int, n_permutations: int
) -> dict[str, Any]:
    """Per report section (all participants, after exclusions), the cumulative-stage report
    (``analysis.stages``), or the reason it cannot be computed yet."""
    from annotations.analysis import apply_exclusion_rules, exclusion_rules_validate
    from annotations.analysis.report import jsonable
    from annotations.analysis.stages import stage_report

    rules = exclusion_rules_validate(settings["exclusion_rules"], default_fast_rt_ms=settings["default_fast_rt_ms"])
    flagged = apply_exclusion_rules(responses, rules=rules)
    out: dict[str, Any] = {}
    for section in SECTIONS:
        frame = flagged[~flagged["excluded"].fillna(False).astype(bool)] if section == "after_exclusions" else flagged
        try:
            out[section] = jsonable(
                stage_report(
                    frame, stages=stages, seed=settings["seed"], n_resamples=n_resamples, n_permutations=n_permutations
                )
            )
        except ValueError as exc:
            out[section] = {"stages": [], "increments": [], "unavailable": {"stages": str(exc)}}
    return out


def _cache_key(kind: str, study: Study, *parts: Any) -> str:
    version = repr((study_data_version(study=study), *parts))
    return f"mmeval:{kind}:{study.pk}:{hashlib.sha256(version.encode('utf-8')).hexdigest()[:32]}"


def _cached(key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    found = cache.get(key)
    if found is None:
        found = compute()
        cache.set(key, found, CACHE_SECONDS)
    return found


def study_report_get(
    *, study: Study, n_resamples: int | None = None, n_permutations: int | None = None
) -> dict[str, Any]:
    """:func:`study_report_compute`, cached until the study's data changes. A failure is cached
    too (as its reason), so a poll does not rebuild the frames for nothing."""
    n_resamples, n_permutations = _counts(n_resamples, n_permutations)

    def compute() -> dict[str, Any]:
        try:
            return {"report": study_report_compute(study=study, n_resamples=n_resamples, n_permutations=n_permutations)}
        except AnalysisUnavailable as exc:
            return {"unavailable": str(exc)}

    found = _cached(_cache_key("analysis", study, int(n_resamples), int(n_permutations)), compute)
    if "unavailable" in found:
        raise AnalysisUnavailable(found["unavailable"])
    return found["report"]


def study_dashboard_get(*, study: Study) -> dict[str, Any]:
    """:func:`study_dashboard_compute`, cached until the study's data changes."""
    return _cached(_cache_key("dashboard", study, _counts(None, None)), lambda: study_dashboard_compute(study=study))
