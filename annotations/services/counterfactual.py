"""Writes of the counterfactual task: the spec's ``counterfactual`` section checked, an item's
edits stored (idempotent: a chunk computed twice stores each edit once, and the edit shown is
the same seeded choice), and what a response records of the edit it answered.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction

from annotations.models import Assignment, CounterfactualEdit, RegisteredModel, Study
from annotations.services.explanations import media_write
from annotations.study_tasks import COUNTERFACTUAL
from workers.engine.edit_kinds import EDIT_KINDS, WORD_SWAP, swap_pairs_parse

K_MAX = 64
SWAPS_MAX = 200


class CounterfactualDesignError(ValueError):
    """A bad ``counterfactual`` section: ``field`` is the spec path, ``message`` why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def counterfactual_design_check(value: Any, *, task: str, model: RegisteredModel) -> dict[str, Any]:
    """The spec's ``counterfactual`` section (``{edits, k, swaps}``) as stored in
    ``Study.design``; {} for another task. Raises :class:`CounterfactualDesignError`."""
    if task != COUNTERFACTUAL:
        if value:
            raise CounterfactualDesignError("counterfactual", f"only applies to task {COUNTERFACTUAL}, not {task}")
        return {}
    value = value or {}
    if not isinstance(value, Mapping):
        raise CounterfactualDesignError("counterfactual", "must be a mapping of edits, k and swaps")
    unknown = sorted(set(value) - {"edits", "k", "swaps"})
    if unknown:
        raise CounterfactualDesignError(f"counterfactual.{unknown[0]}", "unknown field (edits, k, swaps)")
    edits = value.get("edits") or ["modality_baseline", "top_k_removed"]
    if isinstance(edits, str):
        edits = [edits]
    if not isinstance(edits, list) or not all(isinstance(e, str) for e in edits):
        raise CounterfactualDesignError("counterfactual.edits", f"must be a list of {', '.join(EDIT_KINDS)}")
    bad = [e for e in edits if e not in EDIT_KINDS]
    if bad:
        raise CounterfactualDesignError(
            "counterfactual.edits", f"unknown edit {bad[0]!r}; choose from {', '.join(EDIT_KINDS)}"
        )
    k = value.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K_MAX:
        raise CounterfactualDesignError("counterfactual.k", f"must be a whole number from 1 to {K_MAX}, got {k!r}")
    swaps = value.get("swaps") or []
    if isinstance(swaps, str):
        swaps = [line for line in swaps.splitlines() if line.strip()]
    if not isinstance(swaps, list) or len(swaps) > SWAPS_MAX:
        raise CounterfactualDesignError("counterfactual.swaps", f"must be a list of at most {SWAPS_MAX} 'old -> new'")
    try:  # "old -> new", or [old, new] as stored
        pairs = swap_pairs_parse([" -> ".join(map(str, s)) if isinstance(s, (list, tuple)) else str(s) for s in swaps])
    except ValueError as exc:
        raise CounterfactualDesignError("counterfactual.swaps", str(exc)) from None
    if WORD_SWAP in edits:
        if not pairs:
            raise CounterfactualDesignError("counterfactual.swaps", "word_swap needs at least one 'old -> new' pair")
        if "text" not in (model.modalities or []):
            raise CounterfactualDesignError(
                "counterfactual.edits", f"word_swap needs a text modality; model '{model.name}' has none"
            )
    elif pairs:
        raise CounterfactualDesignError("counterfactual.swaps", "only used with the word_swap edit")
    return {"edits": list(dict.fromkeys(edits)), "k": k, "swaps": [list(p) for p in pairs]}


def counterfactual_edits_store(
    *, study: Study, item, edits: Sequence[Mapping[str, Any]], choices: Sequence[str]
) -> list[CounterfactualEdit]:
    """Store an item's edits (``name``, ``kind``, ``description``, ``display``, ``model_label``,
    ``probabilities``, optional ``picture_png``) once: an item that already has its edits keeps
    them. The edit participants see is a seeded choice (per study and item) among those whose
    answer is one of ``choices``, the item's candidates (``counterfactual_candidates``): the
    choices offered then never hint at the answer. None is shown when no edit qualifies."""
    with transaction.atomic():
        stored = list(CounterfactualEdit.objects.filter(study=study, item=item).order_by("name"))
        if stored:
            return stored
        eligible = sorted(edit["name"] for edit in edits if edit["model_label"] in set(choices))
        shown = random.Random(f"{study.seed}:counterfactual:{item.pk}").choice(eligible) if eligible else None
        rows = [
            CounterfactualEdit(
                study=study,
                item=item,
                kind=edit["kind"],
                name=edit["name"],
                description=edit["description"],
                display=edit.get("display") or {},
                picture_view=media_write(folder="views", suffix=".png", data=edit["picture_png"])
                if edit.get("picture_png")
                else "",
                model_label=edit["model_label"],
                probabilities=[float(p) for p in edit["probabilities"]],
                shown=edit["name"] == shown,
            )
            for edit in edits
        ]
        try:
            with transaction.atomic():
                CounterfactualEdit.objects.bulk_create(rows)
        except IntegrityError:  # a concurrent chunk stored them first
            pass
        return list(CounterfactualEdit.objects.filter(study=study, item=item).order_by("name"))


def counterfactual_response_fields(*, study: Study, assignment: Assignment) -> dict[str, Any]:
    """What a counterfactual response records of the edit it answered: the edit and the model's
    answer on it (copied, as ``model_prediction`` is). {} for another task."""
    if study.task != COUNTERFACTUAL:
        return {}
    edit = CounterfactualEdit.objects.filter(study=study, item_id=assignment.item_id, shown=True).first()
    if edit is None:
        return {}
    return {"counterfactual_edit": edit, "edit_prediction": edit.model_label}
