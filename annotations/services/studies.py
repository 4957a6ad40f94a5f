"""Designing, precomputing and launching studies."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from annotations.models import (
    Condition,
    Dataset,
    Explanation,
    PrecomputeJob,
    Prediction,
    RegisteredModel,
    Slot,
    Study,
    StudyItem,
)
from annotations.selectors import study_candidates, study_needs_explanations

KNOWN_VIEWS = {choice.value for choice in Condition.View}


class StudyError(Exception):
    pass


@dataclass
class ConditionSpec:
    name: str
    views: list[str] = field(default_factory=list)

    @property
    def is_baseline(self) -> bool:
        return not self.views


def study_create(
    *,
    owner,
    name: str,
    dataset: Dataset,
    model: RegisteredModel,
    conditions: list[ConditionSpec],
    n_items: int,
    items_per_participant: int,
    raters_per_item: int,
    n_candidates: int = 4,
    seed: int = 0,
    explanation_method: str = "integrated_gradients",
    lease_minutes: int = 60,
    consent_text: str = "",
    instructions: str = "",
) -> Study:
    """Create a draft study. Exactly one condition must be the no-explanation baseline."""
    if dataset.owner_id != owner.pk or model.owner_id != owner.pk:
        raise StudyError("a study can only use your own dataset and model")
    missing = sorted(set(model.modalities) - set(dataset.modalities))
    if missing:
        raise StudyError(f"the model needs modalities {missing} that dataset '{dataset.name}' lacks")
    if len([c for c in conditions if c.is_baseline]) != 1:
        raise StudyError("a study needs exactly one no-explanation baseline condition")
    if len(conditions) < 2:
        raise StudyError("a study needs the baseline and at least one explanation condition")
    if len({c.name for c in conditions}) != len(conditions):
        raise StudyError("condition names must be distinct")
    for condition in conditions:
        unknown = sorted(set(condition.views) - KNOWN_VIEWS)
        if unknown:
            raise StudyError(f"condition '{condition.name}' has unknown views {unknown}; known: {sorted(KNOWN_VIEWS)}")
    if n_items < 1 or items_per_participant < 1 or raters_per_item < 1:
        raise StudyError("item counts must be positive")
    if items_per_participant > n_items:
        raise StudyError("items per participant cannot exceed the number of items in the study")
    if n_candidates == 1:
        raise StudyError("participants need at least two candidate answers")
    with transaction.atomic():
        study = Study.objects.create(
            owner=owner, name=name, dataset=dataset, model=model, seed=seed,
            items_per_participant=items_per_participant, raters_per_item=raters_per_item,
            n_candidates=n_candidates, explanation_method=explanation_method, lease_minutes=lease_minutes,
            consent_text=consent_text, instructions=instructions, design={"n_items": n_items},
        )
        Condition.objects.bulk_create(
            Condition(study=study, name=c.name, views=list(c.views), is_baseline=c.is_baseline) for c in conditions
        )
    return study


def precompute_job_create(*, study: Study) -> PrecomputeJob:
    if study.status not in (Study.Status.DRAFT, Study.Status.READY, Study.Status.PRECOMPUTING):
        raise StudyError(f"a {study.status} study cannot be precomputed again")
    with transaction.atomic():
        Study.objects.filter(pk=study.pk).update(status=Study.Status.PRECOMPUTING)
        study.status = Study.Status.PRECOMPUTING
        return PrecomputeJob.objects.create(study=study)


def study_select_items(*, study: Study) -> list[StudyItem]:
    """Sample the study's item pool with the study's seed, stratified so that half the items
    are ones the model got right and half ones it got wrong (Hase & Bansal 2020). When one
    stratum is short, the other fills the gap. Idempotent: an existing pool is kept."""
    existing = list(study.study_items.all())
    if existing:
        return existing
    n_items = int(study.design.get("n_items", 0)) or study.dataset.items.count()
    predictions = Prediction.objects.filter(model=study.model, item__dataset=study.dataset).select_related("item")
    right = sorted((p.item for p in predictions if p.label == p.item.gold_label), key=lambda i: i.pk)
    wrong = sorted((p.item for p in predictions if p.label != p.item.gold_label), key=lambda i: i.pk)
    rng = random.Random(f"{study.seed}:items")
    rng.shuffle(right)
    rng.shuffle(wrong)
    n_wrong = min(len(wrong), n_items // 2)
    n_right = min(len(right), n_items - n_wrong)
    n_wrong = min(len(wrong), n_items - n_right)
    chosen = [(i, StudyItem.Stratum.MODEL_RIGHT) for i in right[:n_right]] + \
             [(i, StudyItem.Stratum.MODEL_WRONG) for i in wrong[:n_wrong]]
    if len(chosen) < study.items_per_participant:
        raise StudyError(f"only {len(chosen)} items have predictions, fewer than the "
                         f"{study.items_per_participant} each participant needs")
    StudyItem.objects.bulk_create(
        [StudyItem(study=study, item=item, stratum=stratum) for item, stratum in chosen],
        ignore_conflicts=True,
    )
    return list(study.study_items.all())


def study_explanation_targets(*, study: Study) -> dict[int, list[str]]:
    """For each pool item, the labels it needs an explanation for: every candidate, so each
    candidate is shown with its own evidence and choosing means reading it."""
    if not study_needs_explanations(study=study):
        return {}
    predictions = {p.item_id: p for p in Prediction.objects.filter(model=study.model, item__study_items__study=study)}
    return {
        item_id: study_candidates(study=study, prediction=prediction)
        for item_id, prediction in predictions.items()
    }


def prediction_store(*, model: RegisteredModel, item, label: str, probabilities: list[float]) -> Prediction:
    """Idempotent: a redelivered task finds the row and leaves it."""
    prediction, _ = Prediction.objects.get_or_create(
        model=model, item=item, defaults={"label": label, "probabilities": probabilities}
    )
    return prediction


def explanation_store(
    *, model: RegisteredModel, item, method: str, target_label: str, status: str,
    arrays_file: str = "", image_view: str = "", token_view: list | None = None,
    summary: dict | None = None, error: str = "",
) -> Explanation:
    """Store one explanation. Idempotent per (model, item, method, target): a redelivery
    overwrites a failed row with its retry but never duplicates a row."""
    explanation, _ = Explanation.objects.update_or_create(
        model=model, item=item, method=method, target_label=target_label,
        defaults={"status": status, "arrays_file": arrays_file, "image_view": image_view,
                  "token_view": token_view or [], "summary": summary or {}, "error": error},
    )
    return explanation


def precompute_job_progress(*, job: PrecomputeJob, done: int | None = None, total: int | None = None,
                            failed: int | None = None) -> None:
    updates = {k: v for k, v in {"done": done, "total": total, "failed": failed}.items() if v is not None}
    if job.status == PrecomputeJob.Status.QUEUED:
        updates["status"] = PrecomputeJob.Status.RUNNING
    PrecomputeJob.objects.filter(pk=job.pk).update(**updates)
    for key, value in updates.items():
        setattr(job, key, value)


def precompute_job_finish(*, job: PrecomputeJob, error: str = "") -> None:
    """Close the job; the study becomes ready unless the job failed."""
    status = PrecomputeJob.Status.FAILED if error else PrecomputeJob.Status.DONE
    with transaction.atomic():
        PrecomputeJob.objects.filter(pk=job.pk).update(status=status, error=error, finished_at=timezone.now())
        study_status = Study.Status.DRAFT if error else Study.Status.READY
        Study.objects.filter(pk=job.study_id, status=Study.Status.PRECOMPUTING).update(status=study_status)
    job.status, job.error = status, error


def study_launch(*, study: Study) -> Study:
    """Open the study to participants: create every item's rater slots per arm, in a
    seeded order so that items fill evenly (all get one rater before any gets two)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if study.status == Study.Status.LIVE:
            return study
        if study.status != Study.Status.READY:
            raise StudyError(f"only a ready study can be launched (this one is {study.status}); run precompute first")
        missing = _missing_explanations(study=study)
        if missing:
            raise StudyError(f"{missing} explanations are missing or failed; fix the adapter and precompute again")
        rng = random.Random(f"{study.seed}:slots")
        pool = list(study.study_items.values_list("item_id", flat=True))
        slots = [
            Slot(condition=condition, item_id=item_id, index=index, sort_key=rng.getrandbits(62))
            for condition in study.conditions.all()
            for item_id in pool
            for index in range(study.raters_per_item)
        ]
        Slot.objects.bulk_create(slots, ignore_conflicts=True)
        study.status = Study.Status.LIVE
        study.launched_at = timezone.now()
        study.save(update_fields=["status", "launched_at"])
    return study


def study_close(*, study: Study) -> Study:
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    study.status = Study.Status.CLOSED
    return study


def _missing_explanations(*, study: Study) -> int:
    targets = study_explanation_targets(study=study)
    if not targets:
        return 0
    done = set(
        Explanation.objects.filter(model=study.model, method=study.explanation_method, status=Explanation.Status.DONE,
                                   item_id__in=list(targets)).values_list("item_id", "target_label")
    )
    return sum(1 for item_id, labels in targets.items() for label in labels if (item_id, label) not in done)
