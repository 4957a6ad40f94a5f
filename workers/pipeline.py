"""Precompute for a study: predictions, item sampling, explanations. Called by the Celery
task (and in-process by the demo). Loads rows, calls the engine, stores through services.

Idempotent: rows that exist are skipped, so a redelivered task only finishes the work.
"""

from __future__ import annotations

import io
import traceback
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError

from annotations.models import Explanation, Item, PrecomputeJob, Prediction, Study
from annotations.selectors import (
    ATTRIBUTION_VIEWS,
    MODALITY_INTERACTION,
    explanation_has_views,
    item_as_raw,
    study_required_methods,
)
from annotations.services.studies import (
    explanation_store,
    precompute_job_finish,
    precompute_job_progress,
    prediction_store,
    study_explanation_targets,
    study_select_items,
)
from workers.engine.attribution import attribute
from workers.engine.explain import predict
from workers.engine.interactions import cross_modal_interaction, modality_interaction
from workers.engine.metrics import explanation_metrics
from workers.engine.presentation import render_interaction_views, render_item_views, render_share_bars
from workers.engine.registry import load_adapter

# Infrastructure hiccups, not the adapter's fault: worth a retry rather than a failed job.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)

T = TypeVar("T")
Progress = Callable[[int, int], None]


def _chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _write_media(folder: str, suffix: str, data: bytes) -> str:
    """Store bytes under a random name (no label, no item id) and return the relative path."""
    directory = Path(settings.MEDIA_ROOT) / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    return str(path.relative_to(settings.MEDIA_ROOT))


def precompute_run(*, job_id: int, on_progress: Progress | None = None) -> dict:
    """Run (or finish) a precompute job. A failing adapter fails the job with its traceback.

    Steps: predictions for the whole dataset; the 2x2 modality interaction of every item
    when the study filters items by interaction strength; the item pools; then, for every
    pool item and target label, the rows the study's arms are rendered from: the
    attribution (heatmap, tokens, share bars) and the cross-modal interaction matrix
    (matrix and top pairs).
    """
    job = PrecomputeJob.objects.select_related("study__model", "study__dataset").get(pk=job_id)
    if job.status in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED):
        return {"status": job.status}
    study = job.study
    try:
        adapter = load_adapter(study.model.adapter_path, device=settings.MMEVAL_DEVICE)
        batch_size = settings.MMEVAL_PRECOMPUTE_BATCH_SIZE
        items = list(study.dataset.items.order_by("line_number"))
        have = set(Prediction.objects.filter(model=study.model, item__in=items).values_list("item_id", flat=True))
        todo = [item for item in items if item.pk not in have]
        needs_strength = bool((study.design.get("filters") or {}).get("interaction_strength"))
        required = study_required_methods(study=study)
        pool_size = int(study.design.get("n_items", 0)) or len(items)
        pool_size += study.learning_items + 2 * study.attention_checks
        passes = max(1, len(required))
        total = len(items) * (2 if needs_strength else 1) + pool_size * passes
        done = len(items) - len(todo)

        def advance(n: int = 0, failed: int | None = None) -> None:
            nonlocal done
            done += n
            precompute_job_progress(job=job, done=done, total=total, failed=failed)
            if on_progress:
                on_progress(done, total)

        advance()
        for chunk in _chunks(todo, batch_size):
            for item, prediction in zip(chunk, predict(adapter, [item_as_raw(i) for i in chunk], batch_size=batch_size)):
                prediction_store(model=study.model, item=item, label=prediction.label,
                                 probabilities=[float(p) for p in prediction.probabilities])
            advance(len(chunk))
        if needs_strength:
            _modality_interactions(study=study, adapter=adapter, items=items, batch_size=batch_size, advance=advance)

        pool = study_select_items(study=study)
        total = len(items) * (2 if needs_strength else 1) + len(pool) * passes
        targets = study_explanation_targets(study=study)
        failed, first_error = 0, ""
        for method, views in required.items():
            if method == study.explanation_method and views & ATTRIBUTION_VIEWS:
                n_failed, error = _explain_pool(study=study, adapter=adapter, targets=targets, views=views,
                                                batch_size=batch_size, advance=advance, failed_before=failed)
            else:
                n_failed, error = _interact_pool(study=study, adapter=adapter, targets=targets, views=views,
                                                 batch_size=batch_size, advance=advance, failed_before=failed)
            failed, first_error = failed + n_failed, first_error or error
            advance(len(pool) - len(targets), failed=failed)
        if not required:
            advance(len(pool), failed=0)
        error = f"{failed} explanation(s) failed. The first error:\n\n{first_error}" if failed else ""
        precompute_job_finish(job=job, error=error)
    except TRANSIENT_ERRORS:
        raise  # the task retries with backoff and, being idempotent, finishes the work
    except Exception:
        precompute_job_finish(job=job, error=traceback.format_exc())
    return {"status": job.status, "done": job.done, "total": job.total}


def _modality_interactions(*, study: Study, adapter, items: list[Item], batch_size: int,
                           advance: Callable[..., None]) -> None:
    """The 2x2 modality interaction of the predicted class for every item (4 forward passes
    each), stored once per model and item for the interaction-strength filter."""
    have = set(Explanation.objects.filter(model=study.model, method=MODALITY_INTERACTION, item__in=items,
                                          status=Explanation.Status.DONE).values_list("item_id", flat=True))
    predicted = dict(Prediction.objects.filter(model=study.model, item__in=items).values_list("item_id", "label"))
    label_index = {label: k for k, label in enumerate(study.model.labels)}
    todo = [item for item in items if item.pk not in have and item.pk in predicted]
    advance(len(items) - len(todo))
    for chunk in _chunks(todo, batch_size):
        batch = adapter.encode([item_as_raw(i) for i in chunk])
        results = modality_interaction(adapter, batch, targets=[label_index[predicted[i.pk]] for i in chunk])
        for item, result in zip(chunk, results):
            explanation_store(model=study.model, item=item, method=MODALITY_INTERACTION,
                              target_label=predicted[item.pk], status=Explanation.Status.DONE,
                              summary=result.to_json())
        advance(len(chunk))


def _stored_pairs(*, study: Study, method: str, views: set[str], item_ids: list[int]) -> set[tuple[int, str]]:
    rows = Explanation.objects.filter(model=study.model, method=method, status=Explanation.Status.DONE,
                                      item_id__in=item_ids)
    return {(e.item_id, e.target_label) for e in rows.only("item_id", "target_label", "extra_views")
            if explanation_has_views(e, views)}


def _pool_run(*, study: Study, adapter, method: str, targets: dict[int, list[str]], views: set[str], batch_size: int,
              advance: Callable[..., None], failed_before: int,
              compute_chunk: Callable[..., None]) -> tuple[int, str]:
    """Run ``method`` on every pool item that lacks a (target label) row, a chunk of whole
    items at a time. ``compute_chunk`` gets the chunk's encoded batch and pairs and stores
    its rows. A failing chunk marks its rows failed with the traceback. Returns how many
    failed, and the first traceback.

    Every row of one (model, item, method) is drawn together on one colour scale, also when
    another study stored some labels before: an item's views drawn on two scales would let
    the printed scale tell candidates apart, and through them the model's answer."""
    model = study.model
    stored = _stored_pairs(study=study, method=method, views=views, item_ids=list(targets))
    drawn: dict[int, set[str]] = {}
    for item_id, label in Explanation.objects.filter(model=model, method=method, status=Explanation.Status.DONE,
                                                     item_id__in=list(targets)).values_list("item_id", "target_label"):
        drawn.setdefault(item_id, set()).add(label)
    items = {i.pk: i for i in Item.objects.filter(pk__in=list(targets))}
    label_index = {label: k for k, label in enumerate(model.labels)}
    failed, first_error = 0, ""
    per_chunk = max(1, batch_size // max(1, max((len(v) for v in targets.values()), default=1)))
    for chunk_ids in _chunks(sorted(targets), per_chunk):
        pairs = [(item_id, label)
                 for item_id in chunk_ids if any((item_id, label) not in stored for label in targets[item_id])
                 for label in sorted(set(targets[item_id]) | drawn.get(item_id, set()), key=label_index.__getitem__)]
        if not pairs:
            advance(len(chunk_ids))
            continue
        raws = {item_id: item_as_raw(items[item_id]) for item_id in chunk_ids}
        try:
            batch = adapter.encode([raws[item_id] for item_id, _ in pairs])
            compute_chunk(batch=batch, pairs=pairs, raws=raws, items=items,
                         label_targets=[label_index[label] for _, label in pairs])
        except Exception:
            error = traceback.format_exc()
            for item_id, label in pairs:
                explanation_store(model=model, item=items[item_id], method=method, target_label=label,
                                  status=Explanation.Status.FAILED, error=error)
            failed += len(pairs)
            first_error = first_error or error
        advance(len(chunk_ids), failed=failed_before + failed)
    return failed, first_error


def _rows_by_item(pairs: list[tuple[int, str]]) -> dict[int, list[int]]:
    """Batch rows of each item, in pair order."""
    rows: dict[int, list[int]] = {}
    for k, (item_id, _) in enumerate(pairs):
        rows.setdefault(item_id, []).append(k)
    return rows


def _explain_pool(*, study: Study, adapter, targets: dict[int, list[str]], views: set[str], batch_size: int,
                  advance: Callable[..., None], failed_before: int = 0) -> tuple[int, str]:
    """Attributions by the study's method (heatmaps, token highlights and, when an arm shows
    them, modality share bars) for every pool item and target label."""
    # Rows computed for another study may lack the share bars: draw them from their summary.
    if "share" in views:
        _fill_share_views(study=study, targets=targets)

    def compute_chunk(*, batch, pairs, raws, items, label_targets) -> None:
        attributions = attribute(adapter, batch, method=study.explanation_method, targets=label_targets)
        groups = adapter.describe_groups(batch)
        metrics = _metrics_of_predicted(study=study, adapter=adapter, raws=raws, pairs=pairs,
                                        attributions=attributions)
        for item_id, rows in _rows_by_item(pairs).items():
            rendered = render_item_views(item=raws[item_id], attributions=[attributions[k] for k in rows],
                                         groups=groups[rows[0]])
            for k, view in zip(rows, rendered):
                share = render_share_bars(shares=attributions[k].modality_share) if "share" in views else None
                _store_explanation(study=study, item=items[item_id], label=pairs[k][1], attribution=attributions[k],
                                   view=view, share_png=share, metrics=metrics.get(k))

    return _pool_run(study=study, adapter=adapter, method=study.explanation_method, targets=targets, views=views,
                     batch_size=batch_size, advance=advance, failed_before=failed_before, compute_chunk=compute_chunk)


def _metrics_of_predicted(*, study: Study, adapter, raws: dict, pairs: list[tuple[int, str]],
                          attributions) -> dict[int, dict]:
    """Automatic metrics (deletion/insertion, infidelity, sensitivity, …) of the explanations
    of the model's own answer: the ones the item export and the metric-vs-human analysis read.
    Sensitivity reruns the method, so computing it for every candidate would multiply the cost.
    A metric failure is recorded beside the explanation instead of failing it."""
    predicted = dict(Prediction.objects.filter(model=study.model, item_id__in=list(raws)).values_list("item_id", "label"))
    rows = [k for k, (item_id, label) in enumerate(pairs) if predicted.get(item_id) == label]
    if not rows:
        return {}
    try:
        batch = adapter.encode([raws[pairs[k][0]] for k in rows])
        values = explanation_metrics(adapter, batch, [attributions[k] for k in rows], seed=study.seed,
                                     sensitivity_samples=3)
    except Exception as exc:
        return {k: {"error": f"{exc.__class__.__name__}: {exc}"} for k in rows}
    return {k: _finite_json(v) for k, v in zip(rows, values)}


def _finite_json(value):
    """JSON columns reject NaN and Infinity: store an undefined metric as null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _fill_share_views(*, study: Study, targets: dict[int, list[str]]) -> None:
    wanted = {(item_id, label) for item_id, labels in targets.items() for label in labels}
    rows = Explanation.objects.filter(model=study.model, method=study.explanation_method,
                                      status=Explanation.Status.DONE, item_id__in=list(targets))
    for row in rows:
        shares = (row.summary or {}).get("modality_share")
        if (row.item_id, row.target_label) in wanted and "share" not in row.extra_views and shares:
            path = _write_media("views", ".png", render_share_bars(shares=shares))
            Explanation.objects.filter(pk=row.pk).update(extra_views={**row.extra_views, "share": path})


def _interact_pool(*, study: Study, adapter, targets: dict[int, list[str]], views: set[str], batch_size: int,
                   advance: Callable[..., None], failed_before: int = 0) -> tuple[int, str]:
    """The cross-modal interaction matrix by the study's interaction method (matrix view and
    top patch-word pairs) for every pool item and target label. Cost per pair: see
    ``interactions.cross_modal_interaction``."""

    def compute_chunk(*, batch, pairs, raws, items, label_targets) -> None:
        results = cross_modal_interaction(adapter, batch, method=study.interaction_method, targets=label_targets)
        groups = adapter.describe_groups(batch)
        for item_id, rows in _rows_by_item(pairs).items():
            first = results[rows[0]]
            rendered = render_interaction_views(
                item=raws[item_id], modalities=first.modalities, matrices=[results[k].matrix for k in rows],
                group_ids=(first.group_ids_a, first.group_ids_b), groups=groups[rows[0]])
            for k, view in zip(rows, rendered):
                _store_interaction(study=study, item=items[item_id], label=pairs[k][1], result=results[k], view=view)

    return _pool_run(study=study, adapter=adapter, method=study.interaction_method, targets=targets, views=views,
                     batch_size=batch_size, advance=advance, failed_before=failed_before, compute_chunk=compute_chunk)


def _store_interaction(*, study: Study, item: Item, label: str, result, view) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **result.to_arrays())
    matrix = np.asarray(result.matrix, dtype=np.float64)
    explanation_store(
        model=study.model, item=item, method=study.interaction_method, target_label=label,
        status=Explanation.Status.DONE,
        arrays_file=_write_media("explanations", ".npz", buffer.getvalue()),
        image_view=_write_media("views", ".png", view.matrix_png),
        extra_views={"top_pairs": _write_media("views", ".png", view.top_pairs_png)} if view.top_pairs_png else {},
        summary={"modalities": list(result.modalities), "shape": list(matrix.shape),
                 "max_abs": float(np.max(np.abs(matrix))) if matrix.size else 0.0, "options": result.options},
    )


def _store_explanation(*, study: Study, item: Item, label: str, attribution, view, share_png: bytes | None = None,
                       metrics: dict | None = None) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **attribution.to_arrays())
    summary = attribution.to_json()
    summary.pop("group_ids", None)
    explanation_store(
        model=study.model, item=item, method=study.explanation_method, target_label=label,
        status=Explanation.Status.DONE,
        arrays_file=_write_media("explanations", ".npz", buffer.getvalue()),
        image_view=_write_media("views", ".png", view.image_png) if view.image_png else "",
        token_view=view.tokens, summary=summary,
        extra_views={"share": _write_media("views", ".png", share_png)} if share_png else {},
        metrics=metrics,
    )
