"""Reads: every query a view, task or command needs, named for what it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from annotations.models import (
    Assignment,
    Condition,
    Dataset,
    Explanation,
    Participant,
    PrecomputeJob,
    Prediction,
    RegisteredModel,
    Response,
    Study,
    StudyItem,
)
from workers.engine.dataset import is_file_modality


def item_as_raw(item) -> dict[str, Any]:
    """The engine's view of an item: the JSONL line with file paths made absolute."""
    raw: dict[str, Any] = {"id": item.external_id, "label": item.gold_label}
    for modality, value in item.payload.items():
        raw[modality] = str(Path(settings.MEDIA_ROOT) / value) if is_file_modality(modality) else value
    return raw


def studies_visible_to(*, user) -> QuerySet[Study]:
    return Study.objects.filter(Q(owner=user) | Q(collaborators=user)).distinct()


def datasets_of(*, user) -> QuerySet[Dataset]:
    return Dataset.objects.filter(owner=user).annotate(n_items=Count("items"))


def models_of(*, user) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(owner=user)


def study_latest_job(*, study: Study) -> PrecomputeJob | None:
    return study.precompute_jobs.order_by("-created_at", "-id").first()


def study_candidates(*, study: Study, prediction: Prediction) -> list[str]:
    """The labels a participant chooses from: the model's top ``n_candidates`` (all labels
    when 0), in the model's label order. The order shown is shuffled per assignment."""
    labels = list(study.model.labels)
    if study.n_candidates == 0 or study.n_candidates >= len(labels):
        return labels
    ranked = sorted(range(len(labels)), key=lambda k: (-prediction.probabilities[k], k))
    chosen = sorted(ranked[: study.n_candidates])
    return [labels[k] for k in chosen]


def study_needs_explanations(*, study: Study) -> bool:
    return any(c.views for c in study.conditions.all())


def study_progress(*, study: Study) -> dict[str, Any]:
    """Precompute and response progress, as the study page shows and polls it."""
    job = study_latest_job(study=study)
    conditions = list(study.conditions.all())
    n_items = study.study_items.count()
    per_condition = []
    for condition in conditions:
        responses = Response.objects.filter(condition=condition).count()
        per_condition.append({
            "name": condition.name,
            "participants": Participant.objects.filter(condition=condition).exclude(
                platform=Participant.Platform.PREVIEW).count(),
            "responses": responses,
            "target": n_items * study.raters_per_item,
            "active_leases": Assignment.objects.filter(condition=condition, status=Assignment.Status.ACTIVE).count(),
        })
    return {
        "status": study.status,
        "precompute": None if job is None else {
            "status": job.status, "done": job.done, "total": job.total, "failed": job.failed,
            "error": job.error,
        },
        "items": n_items,
        "conditions": per_condition,
        "responses": sum(c["responses"] for c in per_condition),
        "target": sum(c["target"] for c in per_condition),
    }


def study_item_rows(*, study: Study) -> Iterable[dict[str, Any]]:
    """The researcher's view of a study's items: prediction, gold label, stratum."""
    predictions = {p.item_id: p for p in Prediction.objects.filter(model=study.model,
                                                                   item__study_items__study=study)}
    for study_item in study.study_items.select_related("item").order_by("item__line_number"):
        prediction = predictions.get(study_item.item_id)
        yield {"study_item": study_item, "item": study_item.item, "prediction": prediction}


def explanations_for(*, study: Study, item, targets: list[str]) -> dict[str, Explanation]:
    found = Explanation.objects.filter(model=study.model, item=item, method=study.explanation_method,
                                       target_label__in=targets)
    return {e.target_label: e for e in found}


def study_conditions(*, study: Study) -> list[Condition]:
    return list(study.conditions.all())


def study_items_pool(*, study: Study) -> QuerySet[StudyItem]:
    return study.study_items.select_related("item")
