"""Counterfactual edits stored by hand (no engine) for the pool of a study built row by row
(``tests/builders/studies.py``), through the same service the precompute stage calls."""

from __future__ import annotations

from annotations.models import CounterfactualEdit, Prediction, Study
from annotations.selectors.counterfactual import counterfactual_candidates
from annotations.services.counterfactual import counterfactual_edits_store
from tests.builders.studies import png_bytes


def make_counterfactual_edits(study: Study) -> list[CounterfactualEdit]:
    """Two edits per pool item: the picture blanked (the model then answers the next candidate)
    and three patches removed (the model keeps its answer). Returns the edits shown."""
    shown = []
    for k, study_item in enumerate(study.study_items.select_related("item").order_by("item_id")):
        prediction = Prediction.objects.select_related("item").get(model=study.model, item=study_item.item)
        choices = counterfactual_candidates(study=study, prediction=prediction)
        other = choices[(choices.index(prediction.label) + 1) % len(choices)]
        edits = [
            {
                "kind": "modality_baseline",
                "name": "modality_baseline:image",
                "description": "the picture replaced by a blank one",
                "display": {"blank": ["image"]},
                "picture_png": png_bytes((128, 128, 128)),
                "model_label": other,
                "probabilities": [0.25] * len(study.model.labels),
            },
            {
                "kind": "top_k_removed",
                "name": "top_k_removed:3",
                "description": "the parts the explanation marked most important removed: 3 parts of the picture removed",
                "display": {"removed": {"image": [0, 1, 2]}},
                "picture_png": png_bytes(((40 * k) % 256, 128, 128)),
                "model_label": prediction.label,
                "probabilities": [0.25] * len(study.model.labels),
            },
        ]
        stored = counterfactual_edits_store(study=study, item=study_item.item, edits=edits, choices=choices)
        shown += [edit for edit in stored if edit.shown]
    return shown
