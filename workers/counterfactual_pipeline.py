"""The ``counterfactual`` precompute stage: for each pool item of a counterfactual study, the
edits of the design (``workers/engine/counterfactual.py``), the model's answer on each and the
edited picture a participant sees, stored through ``services/counterfactual.py``. Called by
``workers/pipeline.py`` for one chunk; an item whose edits are stored is skipped, so a chunk
computed twice (a redelivered task, a take-over) stores every edit once.

The edits rank groups by the attribution participants see: the stored explanation of the
model's answer by the study's method, or, when no arm shows one, that attribution computed here.
"""

from __future__ import annotations

import numpy as np

from annotations.selectors.counterfactual import (
    counterfactual_candidates,
    item_explanation_arrays_path,
    model_predictions,
    study_counterfactual_design,
)
from annotations.selectors.studies import item_raw
from annotations.selectors.wording import study_modality_words
from annotations.services.counterfactual import counterfactual_edits_store
from workers.engine.attribution import ItemAttribution, attribute
from workers.engine.counterfactual import edit_predictions, edited_picture_png, item_edits
from workers.engine.dataset import IMAGE_MODALITIES
from workers.engine.presentation import image_pixels


def counterfactual_rows(*, study, adapter, items: list) -> None:
    """Compute and store the edits of ``items`` (pool items of ``study``) that lack them."""
    design = study_counterfactual_design(study=study)
    prediction_rows = model_predictions(model=study.model, item_ids=[item.pk for item in items])
    predicted = {pk: row.label for pk, row in prediction_rows.items()}
    names = study_modality_words(study=study)["names"]
    labels = list(study.model.labels)
    pairs = [tuple(pair) for pair in design["swaps"]]
    for item in items:
        raw = item_raw(item)
        label = predicted[item.pk]
        batch = adapter.encode([raw])
        attribution = _stored_attribution(
            study=study, item=item, label=label, adapter=adapter, target=labels.index(label)
        )
        if attribution is None:
            attribution = attribute(adapter, batch, method=study.explanation_method, targets=[labels.index(label)])[0]
        groups = adapter.describe_groups(batch)[0]
        hidden = [g.group_id for modality in groups for g in modality if g.hidden]
        edits = item_edits(
            adapter,
            raw,
            attribution,
            kinds=design["edits"],
            k=design["k"],
            pairs=pairs,
            hidden=hidden,
            names=names,
        )
        predictions = edit_predictions(adapter, raw, edits)
        rows = []
        for edit, prediction in zip(edits, predictions):
            display, picture = _drawn(adapter=adapter, raw=raw, edit=edit, groups=groups, attribution=attribution)
            rows.append(
                {
                    "kind": edit.kind,
                    "name": edit.name,
                    "description": edit.description,
                    "display": display,
                    "picture_png": picture,
                    "model_label": prediction.label,
                    "probabilities": [float(p) for p in prediction.probabilities],
                }
            )
        choices = counterfactual_candidates(study=study, prediction=prediction_rows[item.pk])
        counterfactual_edits_store(study=study, item=item, edits=rows, choices=choices)


def _stored_attribution(*, study, item, label: str, adapter, target: int) -> ItemAttribution | None:
    path = item_explanation_arrays_path(study=study, item_id=item.pk, label=label)
    if path is None:
        return None
    modalities = tuple(adapter.modalities)
    with np.load(path) as npz:
        if not all(f"{m}/group_scores" in npz.files for m in modalities):
            return None
        maps = {m: npz[f"{m}/map"] for m in modalities}
        group_ids = {m: npz[f"{m}/group_ids"] for m in modalities}
        scores = {m: npz[f"{m}/group_scores"] for m in modalities}
    totals = {m: float(scores[m].sum()) for m in modalities}
    denominator = sum(abs(t) for t in totals.values()) or 1.0
    return ItemAttribution(
        method=study.explanation_method,
        target=target,
        modalities=modalities,
        maps=maps,
        group_ids=group_ids,
        group_scores=scores,
        modality_totals=totals,
        modality_share={m: totals[m] / denominator for m in modalities},
    )


def _drawn(*, adapter, raw: dict, edit, groups, attribution: ItemAttribution) -> tuple[dict, bytes | None]:
    """What the page shows of ``edit``: its display record (blanked modalities, removed words,
    edited text) and the edited picture of the first image modality."""
    display = dict(edit.shown)
    modalities = list(adapter.modalities)
    words = {}
    for m, ids in edit.replaced.items():
        if m in IMAGE_MODALITIES or m in display.get("blank", []):
            continue
        removed = set(ids)
        words[m] = [
            {"text": g.text, "removed": g.group_id in removed} for g in groups[modalities.index(m)] if not g.hidden
        ]
    if words:
        display["words"] = words
    image = next((m for m in modalities if m in IMAGE_MODALITIES), None)
    if image is None:
        return display, None
    source = (edit.raw or raw).get(image)
    shape = attribution.maps[image].shape[-2:]
    pixels = image_pixels(source, shape)
    removed = set(edit.replaced.get(image, []))
    blank = image in display.get("blank", [])
    boxes = [g.box for g in groups[modalities.index(image)] if g.group_id in removed and g.box] if not blank else []
    return display, edited_picture_png(pixels, boxes=boxes, blank=blank)
