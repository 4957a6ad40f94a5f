"""Reads for the analysis: the response, item and participant tables of a study.

The frames are built from the very rows the CSV exports write (``annotations.selectors.exports``), so the
statistics computed here and those computed from the downloaded CSVs see the same values.
pandas is imported inside the functions that build frames, so that importing this module (and
the URL configuration above it) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Length

from annotations.models import Condition, Explanation, Participant, Prediction, Response, Study, StudyItem
from annotations.selectors.answers import study_answer_options
from annotations.selectors.exports import (
    PARTICIPANT_COLUMNS,
    RESPONSE_COLUMNS,
    study_exclusion_rules,
    study_item_columns,
    study_item_records,
    study_participant_records,
    study_response_records,
)

if TYPE_CHECKING:
    import pandas as pd


def study_responses_frame(*, study: Study) -> pd.DataFrame:
    """One row per response, the responses export's columns (``RESPONSE_COLUMNS``)."""
    import pandas as pd

    return pd.DataFrame.from_records(list(study_response_records(study=study)), columns=RESPONSE_COLUMNS)


def study_items_frame(*, study: Study) -> pd.DataFrame:
    """One row per pool item, the items export's columns; ``metric:*`` columns are float64."""
    import pandas as pd

    columns = study_item_columns(study=study)
    frame = pd.DataFrame.from_records(list(study_item_records(study=study)), columns=columns)
    for column in columns:
        if column.startswith("metric:") or column == "prediction_probability":
            frame[column] = (
                pd.to_numeric(frame[column]).astype("float64") if len(frame) else pd.Series([], dtype="float64")
            )
    return frame


def study_participants_table(*, study: Study) -> list[dict[str, Any]]:
    """One dict per participant (previews left out), the participants export's columns."""
    return [dict(zip(PARTICIPANT_COLUMNS, row)) for row in study_participant_records(study=study)]


def study_baseline_name(*, study: Study) -> str | None:
    return Condition.objects.filter(study=study, is_baseline=True).values_list("name", flat=True).first()


def study_stage_order(*, study: Study) -> list[str] | None:
    """The arms in stage order when the study's arms are cumulative stages (MultiViz's
    simulation study: each arm shows everything the one before shows and more, starting at
    the no-explanation baseline, with at least two explanation stages); else None."""
    arms = sorted(((c.name, set(c.views)) for c in study.conditions.all()), key=lambda arm: len(arm[1]))
    if len(arms) < 3 or arms[0][1]:
        return None
    if not all(before < after for (_, before), (_, after) in zip(arms, arms[1:])):
        return None
    return [name for name, _ in arms]


def study_analysis_settings(*, study: Study) -> dict[str, Any]:
    """What the analysis of a study is run with: baseline arm, seed, exclusion rules (validated;
    ``ValueError`` if malformed), the fast-response threshold, the sequential-monitoring plan
    (``{}`` for none), the answers that make a participant complete (items per participant), and
    what caps an arm: ``raters_per_item`` and ``n_test_items`` (the pool's test items; the design's
    ``n_items`` before the pool is drawn)."""
    rules = study_exclusion_rules(study=study)
    return {
        "baseline": study_baseline_name(study=study),
        "seed": int(study.seed) % (2**63),
        "exclusion_rules": dict(study.exclusion_rules or {}),
        "default_fast_rt_ms": float(study.min_rt_ms),
        "rules": rules.as_dict(),
        "sequential": dict(study.sequential_monitoring or {}),
        "complete_after": int(study.items_per_participant),
        "n_items": int((study.design or {}).get("n_items") or 0),
        "raters_per_item": int(study.raters_per_item),
        "n_test_items": StudyItem.objects.filter(study=study, role=StudyItem.Role.TEST).count()
        or int((study.design or {}).get("n_items") or 0),
    }


def study_data_version(*, study: Study) -> tuple:
    """A tuple that changes whenever anything the analysis or the dashboard reads changes (the
    cache key of ``services.analysis``).

    No table the dashboard reads has a general "updated" stamp, so the version is made of
    aggregates that move with each write the application makes:

    * responses: count, last id, and sums of confidence, time and passed attention checks (an
      edit in the admin);
    * participants: count, last id, the count in each phase (every step of a session moves one),
      screened-out and excluded counts, the last ``finished_at`` and the number finished, the
      survey (count and sum of ``helpfulness``, total ``comment`` length) and arm assignments;
    * explanations (last ``updated_at``, count), predictions (count, last id), the item pool
      (count, last id, strata/roles), the arms (id, name, baseline, views) and every study field
      the report, the power card or the exports show (the sequential plan and the design
      included).

    Six aggregate queries over indexed foreign keys; cheap next to the analysis it guards.
    """
    responses = Response.objects.filter(participant__study=study).aggregate(
        n=Count("id"),
        last=Max("id"),
        confidence=Sum("confidence"),
        rt=Sum("rt_ms"),
        passed=Count("id", filter=Q(attention_passed=True)),
    )
    phases = {f"phase_{phase}": Count("id", filter=Q(phase=phase)) for phase in Participant.Phase.values}
    participants = Participant.objects.filter(study=study).aggregate(
        n=Count("id"),
        last=Max("id"),
        screened=Count("id", filter=Q(screened_out=True)),
        excluded=Count("id", filter=Q(excluded=True)),
        finished=Count("finished_at"),
        last_finished=Max("finished_at"),
        rated=Count("helpfulness"),
        helpfulness=Sum("helpfulness"),
        comments=Sum(Length("comment")),
        conditions=Sum("condition_id"),
        **phases,
    )
    explanations = Explanation.objects.filter(model=study.model, item__study_items__study=study).aggregate(
        n=Count("id"), last=Max("updated_at")
    )
    predictions = Prediction.objects.filter(model=study.model, item__study_items__study=study).aggregate(
        n=Count("id"), last=Max("id")
    )
    pool = StudyItem.objects.filter(study=study).aggregate(
        n=Count("id"), last=Max("id"), strata=Sum(Length("stratum")), roles=Sum(Length("role"))
    )
    conditions = tuple(
        Condition.objects.filter(study=study).order_by("pk").values_list("pk", "name", "is_baseline", "views")
    )
    return (
        tuple(sorted(responses.items())),
        tuple(sorted(participants.items())),
        str(explanations["last"]),
        explanations["n"],
        tuple(sorted(predictions.items())),
        tuple(sorted(pool.items())),
        repr(conditions),
        repr(sorted((study.exclusion_rules or {}).items())),
        repr(sorted((study.sequential_monitoring or {}).items())),
        study.items_per_participant,
        study.raters_per_item,
        repr(sorted((study.design or {}).items())),
        study.seed,
        study.min_rt_ms,
        study.explanation_method,
        study.interaction_method,
        study.explanation_display,
        study.export_raw_platform_ids,
        study.name,
        study.public_id,
        study.model_id,
    )


def study_chance_level(*, study: Study) -> float:
    """Simulation accuracy of a blind guess: one over the candidates each test answer chose
    from (a per-item quantity, since items offer their own valid answers), averaged over the
    answers; before any answer, averaged over the test items' candidate sets
    (``study_answer_options``), and before any prediction the design's count."""
    counts = [
        len(order)
        for order in Response.objects.filter(
            participant__study=study, phase="test", is_attention_check=False
        ).values_list("candidate_order", flat=True)
        if order
    ]
    if counts:
        return sum(1 / k for k in counts) / len(counts)
    planned = study_answer_options(study=study)["mean_chance"]
    if planned is not None:
        return planned
    labels = len(study.model.labels) or 1
    shown = min(labels, study.n_candidates + study.n_distractors) if study.n_candidates else labels
    return 1 / max(shown, 1)
