"""Reads for precompute: what is still to compute, what an engine batch needs, and the
progress a study page shows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from annotations.models import (
    DecisionFeatures,
    Explanation,
    Item,
    PrecomputeJob,
    Prediction,
    RegisteredModel,
    Study,
)
from workers.engine.dataset import MODALITY_VIEW_OF_KIND

OPEN = (PrecomputeJob.Status.QUEUED, PrecomputeJob.Status.RUNNING)

# Explanation rows of the 2x2 modality interaction (predicted class), for the strength filter.
MODALITY_INTERACTION = "modality_interaction"

# Views of audio, tabular and series modalities: PNGs in ``extra_views``, drawn from attribution rows.
MODALITY_VIEWS = frozenset(MODALITY_VIEW_OF_KIND.values())
# Which stored explanation (by method) each participant-facing view is rendered from.
ATTRIBUTION_VIEWS = frozenset({"heatmap", "tokens", "share"}) | MODALITY_VIEWS
INTERACTION_VIEWS = frozenset({"interaction", "top_pairs"})
# MultiViz stages 3 and 4: rendered from "multiviz:<explanation method>" rows, which need the
# model's decision features over the dataset (DecisionFeatures) first.
MULTIVIZ_VIEWS = frozenset({"features", "prediction"})
MULTIVIZ_PREFIX = "multiviz:"
# The attention view: rendered from "attention:<source>" rows (Chefer relevance or rollout,
# workers/engine/attention.py), drawn from the model's stored attention of each item.
ATTENTION_VIEWS = frozenset({"attention"})
ATTENTION_PREFIX = "attention:"


def study_attention_method(*, study: Study) -> str:
    """The method name the study's attention view is stored under: ``attention:chefer``
    (default) or ``attention:rollout`` (the spec's ``explanations.attention_method``)."""
    return f"{ATTENTION_PREFIX}{(study.design or {}).get('attention_method') or 'chefer'}"


def study_multiviz_method(*, study: Study) -> str:
    """The method name the study's feature and prediction views are stored under: the
    feature heatmaps are drawn by the study's attribution method."""
    return f"{MULTIVIZ_PREFIX}{study.explanation_method}"


def study_views(*, study: Study) -> set[str]:
    """Every view some arm of the study shows."""
    return {view for condition in study.conditions.all() for view in condition.views}


def study_required_methods(*, study: Study) -> dict[str, set[str]]:
    """Explanation method -> the views rendered from its rows that some arm needs. Unimodal
    views come from ``explanation_method``; interaction views from ``interaction_method``
    (stored under that name, e.g. "second_order")."""
    views = study_views(study=study)
    needed: dict[str, set[str]] = {}
    # An arm of a rating or preference study may name its own attribution method.
    for condition in study.conditions.all():
        if set(condition.views) & ATTRIBUTION_VIEWS:
            method = condition.method or study.explanation_method
            needed.setdefault(method, set()).update(set(condition.views) & ATTRIBUTION_VIEWS)
    if views & INTERACTION_VIEWS:
        needed.setdefault(study.interaction_method, set()).update(views & INTERACTION_VIEWS)
    if views & MULTIVIZ_VIEWS:
        needed.setdefault(study_multiviz_method(study=study), set()).update(views & MULTIVIZ_VIEWS)
    if views & ATTENTION_VIEWS:
        needed.setdefault(study_attention_method(study=study), set()).update(views & ATTENTION_VIEWS)
    return needed


def study_attribution_methods(*, study: Study) -> set[str]:
    """The attribution methods the study's arms are drawn by: the study's, and an arm's own."""
    return {study.explanation_method} | {c.method for c in study.conditions.all() if c.method}


def study_needs_features(*, study: Study) -> bool:
    """Whether some arm shows a view built on the model's decision features."""
    return bool(study_views(study=study) & MULTIVIZ_VIEWS)


def study_decision_features_missing(*, study: Study) -> bool:
    """Whether the model's decision features over the study's dataset (for its attribution
    method) are not stored yet."""
    return not DecisionFeatures.objects.filter(
        model=study.model, dataset=study.dataset, method=study.explanation_method, status=DecisionFeatures.Status.DONE
    ).exists()


def model_decision_features(*, model: RegisteredModel, dataset_id: int, method: str) -> DecisionFeatures | None:
    return DecisionFeatures.objects.filter(
        model=model, dataset_id=dataset_id, method=method, status=DecisionFeatures.Status.DONE
    ).first()


def explanation_has_views(explanation: Explanation, views: Iterable[str]) -> bool:
    """Whether a stored row carries the rendered files these views are served from (the
    heatmap and token views depend on the model's modalities, so only the extra views are
    required)."""
    return all(
        view in explanation.extra_views
        for view in views
        if view in ("share", "top_pairs", "features", "prediction") or view in MODALITY_VIEWS
    )


def study_open_job(*, study: Study) -> PrecomputeJob | None:
    """The study's queued or running job (at most one, by a database constraint)."""
    return study.precompute_jobs.filter(status__in=OPEN).first()


def study_items_without_predictions(*, study: Study) -> tuple[int, list[int]]:
    """(dataset size, IDs of the items the study's model has no prediction for, in file order)."""
    items = list(study.dataset.items.order_by("line_number").values_list("pk", flat=True))
    have = set(
        Prediction.objects.filter(model=study.model, item__dataset=study.dataset).values_list("item_id", flat=True)
    )
    return len(items), [pk for pk in items if pk not in have]


def study_strength_items_missing(*, study: Study) -> tuple[int, list[int]]:
    """(dataset size, IDs of predicted items that lack the 2x2 modality interaction)."""
    items = list(study.dataset.items.order_by("line_number").values_list("pk", flat=True))
    predicted = set(
        Prediction.objects.filter(model=study.model, item__dataset=study.dataset).values_list("item_id", flat=True)
    )
    have = set(
        Explanation.objects.filter(
            model=study.model, method=MODALITY_INTERACTION, item__dataset=study.dataset, status=Explanation.Status.DONE
        ).values_list("item_id", flat=True)
    )
    return len(items), [pk for pk in items if pk in predicted and pk not in have]


def _done_pairs(
    *, model: RegisteredModel, method: str, views: Iterable[str], item_ids: list[int]
) -> set[tuple[int, str]]:
    rows = Explanation.objects.filter(model=model, method=method, status=Explanation.Status.DONE, item_id__in=item_ids)
    return {
        (e.item_id, e.target_label)
        for e in rows.only("item_id", "target_label", "extra_views")
        if explanation_has_views(e, views)
    }


def study_explanation_items_missing(
    *, study: Study, method: str, views: set[str], targets: dict[int, list[str]]
) -> list[int]:
    """Pool items (sorted by ID) with at least one target label whose ``method`` row is not
    stored, with the rendered views some arm needs."""
    done = _done_pairs(model=study.model, method=method, views=views, item_ids=list(targets))
    return sorted(
        item_id for item_id, labels in targets.items() if any((item_id, label) not in done for label in labels)
    )


def model_explanation_pairs_to_draw(
    *, model: RegisteredModel, method: str, views: set[str], targets: dict[int, list[str]]
) -> list[tuple[int, str]]:
    """The (item ID, label) rows to compute for ``targets``, in item then label order.

    An item with every target stored needs nothing. Otherwise all its rows are drawn again
    together, the target labels plus any label another study stored before: every row of one
    (model, item, method) shares one colour scale, since views of one item on two scales
    would let the printed scale tell candidates apart, and through them the model's answer."""
    done = _done_pairs(model=model, method=method, views=views, item_ids=list(targets))
    drawn: dict[int, set[str]] = {}
    for item_id, label in Explanation.objects.filter(
        model=model, method=method, status=Explanation.Status.DONE, item_id__in=list(targets)
    ).values_list("item_id", "target_label"):
        drawn.setdefault(item_id, set()).add(label)
    order = {label: k for k, label in enumerate(model.labels)}
    return [
        (item_id, label)
        for item_id in sorted(targets)
        if any((item_id, label) not in done for label in targets[item_id])
        for label in sorted(set(targets[item_id]) | drawn.get(item_id, set()), key=order.__getitem__)
    ]


def model_explanations_lacking_share_view(
    *, model: RegisteredModel, method: str, targets: dict[int, list[str]]
) -> list[Explanation]:
    """Stored attribution rows of these targets without the share-bar view (rows another
    study computed): the bars can be drawn from their stored summary."""
    wanted = {(item_id, label) for item_id, labels in targets.items() for label in labels}
    rows = Explanation.objects.filter(
        model=model, method=method, status=Explanation.Status.DONE, item_id__in=list(targets)
    )
    return [
        row
        for row in rows
        if (row.item_id, row.target_label) in wanted
        and "share" not in row.extra_views
        and (row.summary or {}).get("modality_share")
    ]


def model_predicted_labels(*, model: RegisteredModel, item_ids: Iterable[int]) -> dict[int, str]:
    """Item ID -> the model's predicted label, for the items that have a prediction."""
    return dict(Prediction.objects.filter(model=model, item_id__in=list(item_ids)).values_list("item_id", "label"))


def item_map(*, item_ids: Iterable[int]) -> dict[int, Item]:
    return {item.pk: item for item in Item.objects.filter(pk__in=list(item_ids))}


PART_TITLES = {
    "predictions": "Predictions",
    "strength": "Modality interactions (strength filter)",
    "attribution": "Explanations",
    "interaction": "Interaction matrices",
    "features": "Decision features (whole dataset)",
    "multiviz": "Feature and prediction views",
    "attention": "Attention views",
    "counterfactual": "Counterfactual edits",
}


def job_progress(*, job: PrecomputeJob) -> dict[str, Any]:
    """Progress of a job as the study page and the API show it, in items (not rows).

    ``parts``: one entry per planned part (predictions, strength, attribution, interaction)
    with ``done``/``total`` items; items that needed no work count as done. ``done`` and
    ``total`` sum the parts; parts not planned yet count with an estimate so the bar never
    jumps backwards by much. ``percent`` averages the parts' shares instead, so thousands of
    quick predictions do not make slow explanations look nearly done. ``failed``: explanation rows that failed. ``stalled``: an open
    job that no worker has touched for the stale time (offer a retry)."""
    chunks = list(
        job.chunks.values(
            "stage",
            "status",
            "item_ids",
            "failed_rows",
            "worker",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "dispatched_at",
        )
    )
    plan = job.plan or {}
    parts = []
    for part in (
        "predictions",
        "strength",
        "features",
        "attribution",
        "interaction",
        "multiviz",
        "attention",
        "counterfactual",
    ):
        if part not in plan:
            continue
        # The features chunk works on the whole dataset at once: it counts as one unit.
        finished = sum(
            len(c["item_ids"]) if part != "features" else 1
            for c in chunks
            if c["stage"] == part and c["status"] in ("done", "failed")
        )
        entry = plan[part]
        parts.append(
            {
                "part": part,
                "title": PART_TITLES[part],
                "total": entry["total"],
                "done": min(entry["total"], entry["skipped"] + finished),
            }
        )
    done = sum(p["done"] for p in parts)
    unplanned = _unplanned_estimate(job=job, planned=set(plan))
    total = sum(p["total"] for p in parts) + unplanned
    shares = [p["done"] / p["total"] if p["total"] else 1.0 for p in parts] + ([0.0] if unplanned else [])
    percent = 100 if job.status == PrecomputeJob.Status.DONE else int(100 * sum(shares) / max(len(shares), 1))
    last_activity = max(
        [t for c in chunks for t in (c["started_at"], c["finished_at"], c["heartbeat_at"], c["dispatched_at"]) if t]
        or [job.created_at]
    )
    stalled = job.status in OPEN and (
        timezone.now() - last_activity > timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS)
    )
    return {
        "status": job.status,
        "done": done,
        "total": total,
        "percent": percent,
        "parts": parts,
        "failed": sum(c["failed_rows"] for c in chunks if c["status"] == "failed"),
        "running": sum(1 for c in chunks if c["status"] == "running"),
        "workers": len({c["worker"] for c in chunks if c["worker"]}),
        "error": job.error,
        "dispatch_error": job.dispatch_error,
        "stalled": stalled,
    }


def _unplanned_estimate(*, job: PrecomputeJob, planned: set[str]) -> int:
    """Items of the parts not planned yet, as the study's design predicts them."""
    study = job.study
    estimate = 0
    n_dataset = None
    if "predictions" not in planned:
        n_dataset = study.dataset.items.count()
        estimate += n_dataset
    if (study.design.get("filters") or {}).get("interaction_strength") and "strength" not in planned:
        estimate += n_dataset if n_dataset is not None else study.dataset.items.count()
    methods = study_required_methods(study=study)
    explained = {"attribution", "interaction", "multiviz", "attention"} & planned
    if methods and not explained:
        pool = int(study.design.get("n_items", 0)) or study.dataset.items.count()
        pool += study.learning_items + 2 * study.attention_checks
        estimate += pool * len(methods)
    return estimate
