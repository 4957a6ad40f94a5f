"""Reads about answer options: whether a dataset declares its items' valid answers, and what a
study's candidate sets look like (sizes, per-item chance, model answers outside the valid
answers, declared answers the model does not know)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from annotations.models import Dataset, Item, Prediction, Study, StudyItem
from annotations.selectors.studies import study_candidates

#: Shown wherever a dataset does not say which answers are valid for its items.
UNDECLARED_WARNING = (
    "This dataset does not say which answers are valid for each item (no 'choices' or "
    "'answer_type'), so participants choose among the model's most probable labels over all "
    "labels, whatever the question, and some options cannot be right."
)


def dataset_answers_declared(*, dataset: Dataset) -> bool:
    """Whether the dataset's items declare their valid answers (an import makes it all or none)."""
    return Item.objects.filter(dataset=dataset).exclude(choices=[]).exists()


def dataset_answers_without_label(*, dataset: Dataset, labels: list[str]) -> list[list[str]]:
    """The distinct declared valid-answer lists of ``dataset`` that name none of ``labels``
    (their items could offer only the model's own answer)."""
    known = set(labels)
    lists = Item.objects.filter(dataset=dataset).exclude(choices=[]).values_list("choices", flat=True)
    return sorted(list(c) for c in lists.order_by().distinct() if not known.intersection(c))


def study_answer_options(*, study: Study) -> dict[str, Any]:
    """The candidate sets of a study's test items (``study_candidates``), for the study page,
    the dashboard and the analysis JSON:

    ``declared``: the dataset declares valid answers; ``items``: test items with a prediction;
    ``model_answer_outside``: of those, how many offer the model's answer although it is not a
    valid answer (``outside_share`` the share; ``outside_examples`` a few item ids);
    ``sizes``: ``{candidates shown: items}``; ``mean_chance``: the mean of 1/|candidates| over
    the items (``None`` before predictions); ``unknown_answers``: declared valid answers that
    are none of the model's labels (never offered); ``too_few``: ids of items with fewer than
    two candidates; ``warning``: the undeclared-dataset warning or ``""``."""
    labels = set(study.model.labels)
    test_items = StudyItem.objects.filter(study=study, role=StudyItem.Role.TEST).values_list("item_id", flat=True)
    predictions = list(
        Prediction.objects.filter(model=study.model, item_id__in=test_items).select_related("item").order_by("item_id")
    )
    declared = dataset_answers_declared(dataset=study.dataset)
    sizes: Counter[int] = Counter()
    outside: list[str] = []
    too_few: list[str] = []
    unknown: set[str] = set()
    for prediction in predictions:
        item = prediction.item
        shown = study_candidates(study=study, prediction=prediction)
        sizes[len(shown)] += 1
        if item.choices and prediction.label not in item.choices:
            outside.append(item.external_id)
        if len(shown) < 2:
            too_few.append(item.external_id)
    # Known before any prediction: from the items' declared answers alone (few distinct lists).
    declared_lists = Item.objects.filter(dataset=study.dataset).exclude(choices=[]).values_list("choices", flat=True)
    for choices in declared_lists.order_by().distinct():
        unknown.update(c for c in choices if c not in labels)
    n = len(predictions)
    return {
        "declared": declared,
        "items": n,
        "model_answer_outside": len(outside),
        "outside_share": len(outside) / n if n else None,
        "outside_examples": outside[:5],
        "sizes": dict(sorted(sizes.items())),
        "mean_chance": sum(count / size for size, count in sizes.items()) / n if n else None,
        "unknown_answers": sorted(unknown),
        "too_few": too_few,
        "warning": "" if declared else UNDECLARED_WARNING,
    }
