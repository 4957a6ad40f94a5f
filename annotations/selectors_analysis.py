"""Reads for the analysis: the response, item and participant tables of a study.

The frames are built from the very rows the CSV exports write (``annotations.exports``), so the
statistics computed here and those computed from the downloaded CSVs see the same values.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.db.models import Count, Max, Q

from annotations.exports import (
    PARTICIPANT_COLUMNS,
    RESPONSE_COLUMNS,
    items_export_columns,
    items_export_records,
    participants_export_records,
    responses_export_records,
    study_exclusion_rules,
)
from annotations.models import Condition, Explanation, Participant, Response, Study


def responses_frame(*, study: Study) -> pd.DataFrame:
    """One row per response, the responses export's columns (``RESPONSE_COLUMNS``)."""
    return pd.DataFrame.from_records(list(responses_export_records(study=study)), columns=RESPONSE_COLUMNS)


def items_frame(*, study: Study) -> pd.DataFrame:
    """One row per pool item, the items export's columns; ``metric:*`` columns are float64."""
    columns = items_export_columns(study=study)
    frame = pd.DataFrame.from_records(list(items_export_records(study=study)), columns=columns)
    for column in columns:
        if column.startswith("metric:") or column == "prediction_probability":
            frame[column] = pd.to_numeric(frame[column]).astype("float64") if len(frame) else \
                pd.Series([], dtype="float64")
    return frame


def participants_table(*, study: Study) -> list[dict[str, Any]]:
    """One dict per participant (previews left out), the participants export's columns."""
    return [dict(zip(PARTICIPANT_COLUMNS, row)) for row in participants_export_records(study=study)]


def study_baseline_name(*, study: Study) -> str | None:
    return Condition.objects.filter(study=study, is_baseline=True).values_list("name", flat=True).first()


def study_analysis_settings(*, study: Study) -> dict[str, Any]:
    """What the analysis of a study is run with: baseline arm, seed, exclusion rules (validated;
    ``ValueError`` if malformed) and the fast-response threshold."""
    rules = study_exclusion_rules(study=study)
    return {
        "baseline": study_baseline_name(study=study),
        "seed": int(study.seed) % (2**63),
        "exclusion_rules": dict(study.exclusion_rules or {}),
        "default_fast_rt_ms": float(study.min_rt_ms),
        "rules": rules.as_dict(),
    }


def study_data_version(*, study: Study) -> tuple:
    """A tuple that changes whenever anything the analysis reads changes (cache key)."""
    responses = Response.objects.filter(participant__study=study).aggregate(n=Count("id"), last=Max("id"))
    participants = Participant.objects.filter(study=study).aggregate(
        n=Count("id"), screened=Count("id", filter=Q(screened_out=True)))
    explanations = Explanation.objects.filter(model=study.model, item__study_items__study=study).aggregate(
        last=Max("updated_at"))
    conditions = tuple(Condition.objects.filter(study=study).order_by("pk").values_list("pk", "name", "is_baseline"))
    return (
        responses["n"], responses["last"], participants["n"], participants["screened"],
        str(explanations["last"]), conditions, repr(sorted((study.exclusion_rules or {}).items())),
        study.seed, study.min_rt_ms, study.explanation_method, study.export_raw_platform_ids,
    )
