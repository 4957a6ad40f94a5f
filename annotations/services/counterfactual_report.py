"""A counterfactual study's report (``annotations.analysis.counterfactual``): counterfactual
simulation accuracy per arm and edit kind, its effect against the baseline arm and the pre→post
change, for all participants and after the pre-registered exclusions (the export's
``excluded`` flag). Called by ``services/analysis.py`` for studies of that task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from annotations.models import Study

if TYPE_CHECKING:
    import pandas as pd

SECTIONS = ("all", "after_exclusions")


def counterfactual_report(
    study: Study, settings: dict[str, Any], responses: pd.DataFrame, *, n_resamples: int, exclusions: dict
) -> dict[str, Any]:
    """The report; a section without answers to analyse says why (``{"unavailable": ...}``)."""
    from annotations.analysis.counterfactual import counterfactual_simulation
    from annotations.analysis.report import jsonable

    sections = {}
    for section in SECTIONS:
        frame = responses if section == "after_exclusions" else responses.drop(columns=["excluded"])
        try:
            sections[section] = jsonable(
                counterfactual_simulation(
                    frame, baseline=settings["baseline"], seed=settings["seed"], n_resamples=n_resamples
                )
            )
        except ValueError as exc:
            sections[section] = {"unavailable": str(exc)}
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
        "counterfactual": sections,
        "exclusions": exclusions,
    }
