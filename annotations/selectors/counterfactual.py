"""Reads of the counterfactual task (``annotations/study_tasks.py`` ``counterfactual``): a
study's edit design, the pool items still lacking edits, the candidates of an item, and what
a participant page shows of the edited input. Nothing here that a page receives names the
model's answer on the edit (``CounterfactualEdit.model_label``) or the gold label.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

from annotations.models import Assignment, CounterfactualEdit, Explanation, Prediction, Study, StudyItem
from annotations.selectors.inline_media import media_data_uri
from annotations.selectors.studies import item_valid_labels
from annotations.study_tasks import COUNTERFACTUAL
from workers.engine.dataset import IMAGE_MODALITIES
from workers.engine.edit_kinds import MODALITY_BASELINE, TOP_K_REMOVED

#: The edits a counterfactual study makes when its spec names none, and the default k.
DEFAULT_EDITS = (MODALITY_BASELINE, TOP_K_REMOVED)
DEFAULT_K = 3


def study_counterfactual_design(*, study: Study) -> dict[str, Any]:
    """``{"edits": [...], "k": int, "swaps": [[old, new], ...]}``, defaults filled in."""
    design = (study.design or {}).get("counterfactual") or {}
    return {
        "edits": list(design.get("edits") or DEFAULT_EDITS),
        "k": int(design.get("k") or DEFAULT_K),
        "swaps": [list(pair) for pair in design.get("swaps") or []],
    }


def study_counterfactual_items_missing(*, study: Study) -> list[int]:
    """Pool items (every role, sorted by ID) that have no stored edit for this study."""
    done = set(CounterfactualEdit.objects.filter(study=study).values_list("item_id", flat=True))
    pool = StudyItem.objects.filter(study=study).values_list("item_id", flat=True)
    return sorted(set(pool) - done)


def study_items_without_shown_edit(*, study: Study) -> list[int]:
    """Pool items whose edits are stored but none applies (no edit of the design's kinds)."""
    shown = set(CounterfactualEdit.objects.filter(study=study, shown=True).values_list("item_id", flat=True))
    pool = set(StudyItem.objects.filter(study=study).values_list("item_id", flat=True))
    return sorted(pool - shown)


def model_predictions(*, model, item_ids: list[int]) -> dict[int, Prediction]:
    """Item ID -> the model's stored prediction (with its item), for the items that have one."""
    return {p.item_id: p for p in Prediction.objects.filter(model=model, item_id__in=item_ids).select_related("item")}


def item_explanation_arrays_path(*, study: Study, item_id: int, label: str) -> str | None:
    """The stored attribution arrays (npz, absolute path) of the study's method for ``label``,
    or None when there are none: the edits rank groups by the explanation participants see."""
    stored = (
        Explanation.objects.filter(
            model_id=study.model_id,
            item_id=item_id,
            method=study.explanation_method,
            target_label=label,
            status=Explanation.Status.DONE,
        )
        .values_list("arrays_file", flat=True)
        .first()
    )
    return os.path.join(settings.MEDIA_ROOT, stored) if stored else None


def counterfactual_candidates(*, study: Study, prediction: Prediction) -> list[str]:
    """The choices for an item's edited input, in the model's label order: every valid label
    of the item and the model's answer on the original. Fixed before any edit is computed, so
    the set cannot hint at the answer on the edit: the edit shown is chosen among those whose
    answer is one of them (``services/counterfactual.py`` ``counterfactual_edits_store``)."""
    labels = list(study.model.labels)
    chosen = set(item_valid_labels(labels=labels, item=prediction.item))
    if prediction.label in labels:
        chosen.add(labels.index(prediction.label))
    return [labels[k] for k in sorted(chosen)]


def assignment_counterfactual(*, study: Study, assignment: Assignment) -> dict[str, Any] | None:
    """What the page shows of the edited input (the original with its explanation comes from
    ``assignment_page``): the edit's description, the edited picture inline, the edited text,
    and the model's answer on the *original* input, which the task shows (Hase & Bansal).
    None outside the counterfactual task."""
    if study.task != COUNTERFACTUAL:
        return None
    edit = CounterfactualEdit.objects.filter(study=study, item_id=assignment.item_id, shown=True).first()
    original = (
        Prediction.objects.filter(model_id=study.model_id, item_id=assignment.item_id)
        .values_list("label", flat=True)
        .first()
    )
    if edit is None:
        return {"missing": True, "original_answer": original}
    payload = assignment.item.payload
    texts = []
    edited_text = (edit.display or {}).get("text") or {}
    removed = (edit.display or {}).get("removed") or {}
    blank = set((edit.display or {}).get("blank") or [])
    words = (edit.display or {}).get("words") or {}
    for modality in study.model.modalities:
        if modality in IMAGE_MODALITIES:
            continue
        if modality in blank:
            texts.append({"modality": modality, "blank": True, "words": []})
        elif modality in edited_text:
            texts.append({"modality": modality, "text": edited_text[modality], "words": []})
        elif modality in removed and modality in words:
            texts.append({"modality": modality, "words": words[modality]})
        elif isinstance(payload.get(modality), str):
            texts.append({"modality": modality, "text": payload[modality], "words": []})
    return {
        "missing": False,
        "original_answer": original,
        "description": edit.description,
        "picture_src": media_data_uri(edit.picture_view) if edit.picture_view else "",
        "texts": texts,
    }
