"""Writes of rationale studies (annotations/study_tasks.py, task ``rationale``): the check of a
participant's marks before they are stored."""

from __future__ import annotations

from annotations.models import Item, Study
from annotations.selectors.rationales import rationale_item_layout
from workers.engine.rationale_units import MarksError, rationale_marks_parse

__all__ = ["MarksError", "rationale_marks_check"]


def rationale_marks_check(*, study: Study, item: Item, raw: object) -> dict[str, list]:
    """The marks of an answer in the evidence format, checked against the item's units; raises
    :class:`MarksError` (a message for the participant) when they do not fit."""
    return rationale_marks_parse(raw, rationale_item_layout(study=study, item=item))
