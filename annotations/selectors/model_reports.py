"""Reads for model reports: what a researcher may see, a report's progress, the items a worker
computes on, and the interaction types a study design draws items by."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from annotations.models import Dataset, Item, ModelReport, RegisteredModel
from annotations.selectors.studies import item_raw

#: The report's stages, in order, with what the progress bar says during each.
STAGE_TITLES = {
    "subsets": "modalities at their inputs and baselines",
    "permutation": "modalities taken from other items",
    "noise": "Gaussian noise in embedding space",
    "corruption": "the adapter's corruptions",
    "emap": "EMAP (every item with every other)",
    "pid": "partial information decomposition",
    "group_pairs": "cross-modal group pairs",
    "bias": "groups, leakage and evidence regions",
    "learning": "checkpoints",
}


def user_model_reports(*, user) -> QuerySet[ModelReport]:
    """A researcher's own reports (reports are not shared)."""
    return ModelReport.objects.filter(owner=user).select_related("model", "dataset", "train_dataset")


def user_model_report_list(*, user, limit: int = 200) -> QuerySet[ModelReport]:
    """The newest ``limit`` of :func:`user_model_reports`, each with ``n_items``: the items of
    its dataset (what its time grows with)."""
    return user_model_reports(user=user).annotate(n_items=Count("dataset__items"))[:limit]


def model_report_progress(*, report: ModelReport) -> dict[str, Any]:
    """Status and progress as the page and the API show them: the stages finished, the stage
    running with its done/total, and a fraction over all stages."""
    stages = list(STAGE_TITLES)
    finished = [s for s in stages if s in (report.state or {})]
    progress = report.progress or {}
    stage = progress.get("stage") or ""
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    if report.status == ModelReport.Status.DONE:
        fraction = 1.0
    else:
        within = done / total if total and stage and stage not in finished else 0.0
        fraction = (len(finished) + within) / len(stages)
    return {
        "id": report.pk,
        "status": report.status,
        "stage": stage,
        "stage_title": STAGE_TITLES.get(stage, ""),
        "done": done,
        "total": total,
        "stages_finished": finished,
        "stages": stages,
        "fraction": round(fraction, 4),
        "error": report.error,
        "dispatch_error": report.dispatch_error,
        "created_at": report.created_at.isoformat() if report.created_at else None,
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
    }


def dataset_raw_items(*, dataset: Dataset) -> list[dict[str, Any]]:
    """The dataset's items as the engine reads them, in file order, with their bias annotations
    (``group``, ``evidence``) where imported: the model report alone reads them."""
    return [item_report_raw(item) for item in dataset.items.order_by("line_number")]


def item_report_raw(item) -> dict[str, Any]:
    """:func:`item_raw` plus the item's ``group`` and ``evidence`` when it has them."""
    raw = item_raw(item)
    if item.group:
        raw["group"] = item.group
    if item.evidence:
        raw["evidence"] = item.evidence
    return raw


def dataset_item_lines(*, dataset: Dataset) -> dict[str, int]:
    """Each item's 1-based line in the imported JSONL file, by item id (names items in errors)."""
    return dict(dataset.items.values_list("external_id", "line_number"))


def model_latest_done_report(*, model: RegisteredModel, dataset: Dataset) -> ModelReport | None:
    """The most recently finished report of ``model`` on ``dataset``."""
    return (
        ModelReport.objects.filter(model=model, dataset=dataset, status=ModelReport.Status.DONE)
        .order_by("-finished_at", "-pk")
        .first()
    )


def model_item_interaction_types(
    *, model: RegisteredModel, dataset: Dataset
) -> tuple[ModelReport, dict[int, str]] | None:
    """The interaction type of every item (item pk -> type) from the latest finished report of
    ``model`` on ``dataset``, with that report; None when there is none."""
    report = model_latest_done_report(model=model, dataset=dataset)
    if report is None or not report.result:
        return None
    by_external = {row["id"]: row["interaction"] for row in report.result.get("items") or []}
    pks = dict(Item.objects.filter(dataset=dataset).values_list("external_id", "pk"))
    return report, {pks[external]: kind for external, kind in by_external.items() if external in pks}


def model_report_pid_rows(*, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The partial information decomposition of a finished report, one row per part
    (redundancy, each uniqueness, synergy, total): ``{"part", "name", "dataset", "model"}``
    with the dataset's and the model's ``{"estimate", "ci_low", "ci_high"}`` blocks (None when
    not computed). Empty when the report has no PID."""
    from workers.engine.report.tables import PID_PARTS, pid_part_names

    pid = (result.get("interactions") or {}).get("pid") or {}
    if "model" not in pid:
        return []
    names = pid_part_names(pid["modalities"])
    dataset, model = pid.get("dataset") or {}, pid.get("model") or {}
    return [{"part": p, "name": names[p], "dataset": dataset.get(p), "model": model.get(p)} for p in PID_PARTS]


def model_report_figures(*, report: ModelReport) -> dict[str, str]:
    """The finished report's SVG figures (name -> SVG), drawn once and cached: a finished
    report never changes."""
    from django.core.cache import cache

    from workers.engine.report.plots import report_figures  # matplotlib: only when a report is drawn

    if report.status != ModelReport.Status.DONE or not report.result:
        return {}
    stamp = report.finished_at.timestamp() if report.finished_at else 0
    key = f"model-report-figures:{report.pk}:{stamp}"
    figures = cache.get(key)
    if figures is None:
        figures = report_figures(report.result)
        cache.set(key, figures, 24 * 3600)
    return figures
