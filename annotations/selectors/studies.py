"""Reads about studies and what researchers own: the study list, its arms, items, candidates,
explanations and progress."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from annotations.models import (
    Assignment,
    Condition,
    Dataset,
    Explanation,
    Item,
    Participant,
    PrecomputeJob,
    Prediction,
    RegisteredModel,
    Response,
    Study,
    StudyItem,
)
from annotations.selectors.precompute import job_progress, study_multiviz_method
from annotations.study_tasks import study_task
from workers.engine.dataset import is_file_modality


def item_raw(item) -> dict[str, Any]:
    """The engine's view of an item: the JSONL line with file paths made absolute."""
    raw: dict[str, Any] = {"id": item.external_id, "label": item.gold_label}
    for modality, value in item.payload.items():
        raw[modality] = str(Path(settings.MEDIA_ROOT) / value) if is_file_modality(modality) else value
    return raw


@dataclass(frozen=True)
class LabelCoverage:
    """How many of a dataset's gold answers a model can give.

    Attributes:
        n_items: the dataset's items.
        n_known: items whose gold answer is one of the model's labels.
        unknown: each gold answer that is not a label, with its number of items, most first.
    """

    n_items: int
    n_known: int
    unknown: list[tuple[str, int]]

    def unknown_text(self, *, limit: int = 8) -> str:
        shown = ", ".join(
            f"'{label}' ({count} item{'s' if count != 1 else ''})" for label, count in self.unknown[:limit]
        )
        more = f" and {len(self.unknown) - limit} more" if len(self.unknown) > limit else ""
        return shown + more


def dataset_label_coverage(*, dataset, labels, item_ids=None) -> LabelCoverage:
    """Which of ``dataset``'s gold answers (of the items ``item_ids``, default all) are among
    ``labels``: a model that cannot give the gold answer is "wrong" on every such item."""
    items = dataset.items.all() if item_ids is None else dataset.items.filter(pk__in=item_ids)
    counts = dict(items.values_list("gold_label").annotate(n=Count("pk")).values_list("gold_label", "n"))
    known = set(labels)
    unknown = sorted(((g, n) for g, n in counts.items() if g not in known), key=lambda gn: (-gn[1], gn[0]))
    return LabelCoverage(
        n_items=sum(counts.values()), n_known=sum(n for g, n in counts.items() if g in known), unknown=unknown
    )


def label_coverage_warning(*, dataset, labels) -> str:
    """One line for a partial overlap of ``dataset``'s gold answers with ``labels``; "" when
    every gold answer is a label."""
    coverage = dataset_label_coverage(dataset=dataset, labels=labels)
    if not coverage.unknown:
        return ""
    return (
        f"warning: {coverage.n_items - coverage.n_known} of {coverage.n_items} items of dataset '{dataset.name}' "
        f"have a gold answer the model cannot give: {coverage.unknown_text()}; the model counts as wrong on them"
    )


def user_studies(*, user) -> QuerySet[Study]:
    return Study.objects.filter(Q(owner=user) | Q(collaborators=user)).distinct()


def user_datasets(*, user) -> QuerySet[Dataset]:
    """The user's datasets with ``n_items`` and ``n_declared`` (items that declare their valid answers)."""
    return Dataset.objects.filter(owner=user).annotate(
        n_items=Count("items"), n_declared=Count("items", filter=~Q(items__choices=[]))
    )


def user_models(*, user) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(owner=user)


def study_latest_job(*, study: Study) -> PrecomputeJob | None:
    return study.precompute_jobs.order_by("-created_at", "-id").first()


def item_valid_labels(*, labels: list[str], item: Item) -> list[int]:
    """Indices of the model's ``labels`` that are valid answers to ``item``: those among its
    declared ``choices``, or every label when the dataset declares none."""
    if not item.choices:
        return list(range(len(labels)))
    valid = set(item.choices)
    return [k for k, label in enumerate(labels) if label in valid]


def study_candidates(*, study: Study, prediction: Prediction) -> list[str]:
    """The labels a participant chooses from, in the model's label order: drawn from the
    item's valid answers (``item_valid_labels``) and always holding the model's own answer,
    valid or not (the task is to predict the model). Every valid label when ``n_candidates``
    is 0, else the model's answer, the next most probable valid labels up to
    ``n_candidates``, plus ``n_distractors`` random other valid labels. Distractors are
    seeded per (study, item), so precompute and every participant see the same set; the
    order shown is shuffled per assignment. A dataset without declared answers gives
    today's top-k over all labels."""
    labels = list(study.model.labels)
    valid = item_valid_labels(labels=labels, item=prediction.item)
    answer = labels.index(prediction.label) if prediction.label in labels else None
    pool = sorted(set(valid) | ({answer} if answer is not None else set()))
    if study.n_candidates == 0 or study.n_candidates >= len(pool):
        return [labels[k] for k in pool]
    # The model's answer first (it is the most probable label), then the valid ones by probability.
    ranked = sorted(pool, key=lambda k: (k != answer, -prediction.probabilities[k], k))
    chosen = ranked[: study.n_candidates]
    rest = sorted(ranked[study.n_candidates :])
    if study.n_distractors and rest:
        rng = random.Random(f"{study.seed}:distractors:{prediction.item_id}")
        chosen += rng.sample(rest, min(study.n_distractors, len(rest)))
    return [labels[k] for k in sorted(chosen)]


def study_needs_explanations(*, study: Study) -> bool:
    return any(c.views for c in study.conditions.all())


def prediction_explanation_targets(*, study: Study, prediction: Prediction) -> list[str]:
    """The labels an item is explained for: every candidate, or just the predicted class
    when the study shows that one explanation unlabelled, or just the gold answer in a rationale
    study (never shown; its plausibility is scored against the participants' evidence for it)."""
    if study_task(study.task).answer == "rationale":
        return [prediction.item.gold_label]
    if study.explanation_display == "predicted_unlabelled":
        return [prediction.label]
    return study_candidates(study=study, prediction=prediction)


def study_explanation_targets(*, study: Study) -> dict[int, list[str]]:
    """For each pool item (test, learning and attention items alike, so that checks look
    like any other item), the labels it needs an explanation for: every candidate, so each
    candidate is shown with its own evidence and choosing means reading it; or only the
    predicted class when the study shows that one unlabelled."""
    if not study_needs_explanations(study=study):
        return {}
    predictions = {
        p.item_id: p
        for p in Prediction.objects.filter(model=study.model, item__study_items__study=study).select_related("item")
    }
    return {
        item_id: prediction_explanation_targets(study=study, prediction=prediction)
        for item_id, prediction in predictions.items()
    }


def study_progress(*, study: Study) -> dict[str, Any]:
    """Precompute and response progress, as the study page shows and polls it. Counts test
    answers to real items only: previews, pre-test answers and attention checks are not
    the data the caps are about."""
    job = study_latest_job(study=study)
    conditions = list(study.conditions.all())
    n_items = study.study_items.filter(role=StudyItem.Role.TEST).count()
    real = ~Q(participant__platform=Participant.Platform.PREVIEW)
    # Counted per arm on an index of the scored answers alone, previews' answers (few: the
    # researcher's own walks) then taken off, rather than joining every answer to its participant.
    scored = Response.objects.filter(phase=Assignment.Phase.TEST, is_attention_check=False)
    answered = _count_by_condition(scored.filter(condition__in=[condition.pk for condition in conditions]))
    previewed = _count_by_condition(
        scored.filter(participant__study=study, participant__platform=Participant.Platform.PREVIEW)
    )
    responses = {pk: n - previewed.get(pk, 0) for pk, n in answered.items()}
    participants = _count_by_condition(
        Participant.objects.filter(study=study).exclude(platform=Participant.Platform.PREVIEW)
    )
    leases = _count_by_condition(
        Assignment.objects.filter(
            real,
            condition__study=study,
            status=Assignment.Status.ACTIVE,
            phase=Assignment.Phase.TEST,
            kind=Assignment.Kind.ITEM,
        )
    )
    per_condition = [
        {
            "name": condition.name,
            "participants": participants.get(condition.pk, 0),
            "responses": responses.get(condition.pk, 0),
            "target": n_items * study.raters_per_item,
            "active_leases": leases.get(condition.pk, 0),
        }
        for condition in conditions
    ]
    return {
        "status": study.status,
        "precompute": None if job is None else job_progress(job=job),
        "items": n_items,
        "conditions": per_condition,
        "responses": sum(c["responses"] for c in per_condition),
        "target": sum(c["target"] for c in per_condition),
    }


def _count_by_condition(rows: QuerySet) -> dict[int, int]:
    return dict(rows.order_by().values_list("condition_id").annotate(n=Count("*")).values_list("condition_id", "n"))


def study_item_rows(*, study: Study, limit: int | None = None) -> list[dict[str, Any]]:
    """The researcher's view of a study's items: prediction, gold label, stratum (the first
    ``limit`` items by dataset line, when given)."""
    study_items = list(study.study_items.select_related("item").order_by("item__line_number")[:limit])
    predictions = {
        p.item_id: p for p in Prediction.objects.filter(model=study.model, item_id__in=[s.item_id for s in study_items])
    }
    return [{"study_item": s, "item": s.item, "prediction": predictions.get(s.item_id)} for s in study_items]


def study_item_explanations(
    *, study: Study, item, targets: list[str], method: str | None = None
) -> dict[str, Explanation]:
    """Stored explanations of one item by target label (``method`` defaults to the study's
    attribution method)."""
    found = Explanation.objects.filter(
        model=study.model, item=item, method=method or study.explanation_method, target_label__in=targets
    )
    return {e.target_label: e for e in found}


def study_conditions(*, study: Study) -> list[Condition]:
    return list(study.conditions.all())


def study_items_pool(*, study: Study) -> QuerySet[StudyItem]:
    return study.study_items.select_related("item")


def study_by_key(*, key: str) -> Study:
    """The one study whose id, public id or name is ``key`` (names are unique only per
    owner, so an ambiguous name is refused). Raises LookupError."""
    query = Study.objects.filter(public_id=key) | Study.objects.filter(name=key)
    if key.isdigit():
        query = query | Study.objects.filter(pk=int(key))
    studies = list(query.distinct().order_by("pk")[:10])
    if not studies:
        what = f"the id {key} (nor that public id or name)" if key.isdigit() else f"the name or public id '{key}'"
        raise LookupError(f"no study has {what}")
    if len(studies) > 1:
        ids = ", ".join(str(s.pk) for s in studies)
        raise LookupError(f"more than one study matches '{key}' (ids {ids}); give the id")
    return studies[0]


def study_item(*, study: Study, item_pk: int) -> Item | None:
    """An item of the study's pool, or ``None``."""
    return Item.objects.filter(pk=item_pk, study_items__study=study).first()


def study_explanation(*, study: Study, explanation_pk: int) -> Explanation | None:
    """A stored explanation of the study's model on an item of its pool, or ``None``."""
    return Explanation.objects.filter(pk=explanation_pk, model=study.model, item__study_items__study=study).first()


def study_item_preview(*, study: Study, item_pk: int) -> dict[str, Any] | None:
    """The researcher's preview of one pool item (``None`` if not in the pool): the model's
    prediction, its top probabilities, the gold label, and every candidate's explanation and
    interaction rows (and MultiViz rows). Researchers see everything; participants never see this page."""
    item = study_item(study=study, item_pk=item_pk)
    if item is None:
        return None
    prediction = item.predictions.filter(model=study.model).first()
    candidates = study_candidates(study=study, prediction=prediction) if prediction else []
    explanations = study_item_explanations(study=study, item=item, targets=candidates)
    interactions = study_item_explanations(study=study, item=item, targets=candidates, method=study.interaction_method)
    multiviz = study_item_explanations(
        study=study, item=item, targets=candidates, method=study_multiviz_method(study=study)
    )
    probabilities = sorted(zip(study.model.labels, prediction.probabilities), key=lambda p: -p[1]) if prediction else []
    study_item_row = item.study_items.filter(study=study).first()
    return {
        "item": item,
        "prediction": prediction,
        "probabilities": probabilities[:8],
        "rows": [
            (label, explanations.get(label), interactions.get(label), multiviz.get(label)) for label in candidates
        ],
        "role": study_item_row.role if study_item_row else "",
        "show_interactions": bool(interactions),
        "texts": [(k, v) for k, v in item.payload.items() if k != "image"],
        "has_image": "image" in item.payload,
    }


def study_test_strata(*, study: Study) -> dict[str, Any]:
    """The test pool by stratum: ``right`` and ``wrong`` (items the model got right / wrong) and
    ``share_wrong``, the share of wrong model answers a participant is shown in expectation
    (the sampler aims at half, ``services/studies.py`` ``_stratified``; None before sampling)."""
    counts = dict(study.study_items.filter(role=StudyItem.Role.TEST).values_list("stratum").annotate(n=Count("id")))
    right, wrong = counts.get(StudyItem.Stratum.MODEL_RIGHT, 0), counts.get(StudyItem.Stratum.MODEL_WRONG, 0)
    return {"right": right, "wrong": wrong, "share_wrong": wrong / (right + wrong) if right + wrong else None}
