"""A counterfactual study's report (``annotations.analysis.counterfactual``): counterfactual
simulation accuracy per arm and edit kind, its effect against the baseline arm and the pre→post
change, for all participants and after the pre-registered exclusions (the export's
``excluded`` flag). Called by ``services/analysis.py`` for studies of that task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from annotations.models import Study
from annotations.services.report_sections import report_sections

if TYPE_CHECKING:
    import pandas as pd


def counterfactual_report(
    study: Study, settings: dict[str, Any], responses: pd.DataFrame, *, n_resamples: int, exclusions: dict
) -> dict[str, Any]:
    """The report; a section without answers to analyse says why (``{"unavailable": ...}``)."""
    from annotations.analysis.counterfactual import counterfactual_simulation

    sections = report_sections(
        responses,
        lambda frame: counterfactual_simulation(
            frame, baseline=settings["baseline"], seed=settings["seed"], n_resamples=n_resamples
        ),
    )
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
