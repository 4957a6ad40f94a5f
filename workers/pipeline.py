"""Precompute: computing one chunk, and running a whole job in this process.

Orchestration and engine calls only. What to compute is read through selectors
(``annotations.selectors.precompute``), results are stored and chunks claimed, finished and
planned through services (``annotations.services.precompute``, ``annotations.services.studies``).

A chunk is computed by :func:`chunk_run`: the Celery task calls it for one chunk on whichever
worker took the message; :func:`precompute_run` calls it for every chunk of a job in turn (the
command line, the demo, the embedded mode's background thread). Both are idempotent: stored
rows are skipped, and a chunk taken over from a dead worker is simply computed again.

The rules: docs/DESIGN.md, "Precompute".
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import traceback
from collections.abc import Callable
from functools import partial

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from annotations.models import PrecomputeChunk, PrecomputeJob
from annotations.selectors.attention import item_attention_record, item_attention_row
from annotations.selectors.precompute import (
    ATTENTION_PREFIX,
    MODALITY_INTERACTION,
    item_map,
    job_progress,
    model_decision_features,
    model_explanation_pairs_to_draw,
    model_explanations_lacking_share_view,
    model_predicted_labels,
    study_required_methods,
)
from annotations.selectors.studies import item_raw
from annotations.services.attention import item_attention_store
from annotations.services.explanations import (
    decision_features_store,
    explanation_share_view_add,
    explanation_store,
    explanation_store_attribution,
    explanation_store_failed,
    explanation_store_interaction,
    explanation_store_multiviz,
    prediction_store,
)
from annotations.services.precompute import (
    precompute_advance,
    precompute_chunk_claim,
    precompute_chunk_finish,
    precompute_chunk_heartbeat,
    precompute_chunk_release,
    precompute_chunk_split,
    precompute_next_pending,
    precompute_take_over,
)
from workers.adapters import registered_model_adapter
from workers.counterfactual_pipeline import counterfactual_rows
from workers.engine.adapter import AdapterError
from workers.engine.attention import attention_attribution, attention_record, has_attention
from workers.engine.attribution import attribute, item_lines_places, nonfinite_naming
from workers.engine.dataset import IMAGE_MODALITIES
from workers.engine.explain import predict
from workers.engine.feature_views import example_thumbnail_png, feature_heat, render_feature_views
from workers.engine.features import decision_features, feature_attributions, top_activating
from workers.engine.interactions import cross_modal_interaction, modality_interaction
from workers.engine.metrics import explanation_metrics
from workers.engine.presentation import (
    image_pixels,
    render_interaction_views,
    render_item_views,
    render_share_bars,
)
from workers.engine.presentation_modalities import render_modality_views
from workers.engine.render import shared_scale
from workers.engine.sparse import SparseHead, fit_sparse_head, score_parts
from workers.heartbeat import heartbeat_kept

logger = logging.getLogger(__name__)

# Infrastructure hiccups, not the adapter's fault: worth a retry rather than a failed chunk.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
Stage = PrecomputeChunk.Stage
Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- running


def precompute_run(*, job_id: int, on_progress: Progress | None = None) -> dict:
    """Run (or finish) a whole job in this process, chunk after chunk, through the same
    claim/compute/finish steps the workers use. A failing adapter fails the job with its
    traceback. Returns the job's status and progress."""
    worker = f"inline@{socket.gethostname()}:{os.getpid()}/{threading.current_thread().name}"
    precompute_take_over(job_id=job_id)
    precompute_advance(job_id=job_id)
    while True:
        chunk_id = precompute_next_pending(job_id=job_id)
        if chunk_id is None:
            precompute_advance(job_id=job_id)
            chunk_id = precompute_next_pending(job_id=job_id)
            if chunk_id is None:
                break
        chunk_run(chunk_id=chunk_id, worker=worker)
        if on_progress:
            progress = job_progress(job=PrecomputeJob.objects.get(pk=job_id))
            on_progress(progress["done"], progress["total"])
    job = PrecomputeJob.objects.select_related("study").get(pk=job_id)
    progress = job_progress(job=job)
    if on_progress:
        on_progress(progress["done"], progress["total"])
    return {"status": job.status, "done": progress["done"], "total": progress["total"]}


def chunk_run(*, chunk_id: int, worker: str) -> str:
    """Claim, compute and finish one chunk. Returns what happened: "done", "failed",
    "split" (it hit the soft time limit and was halved) or "skipped" (finished, or held by a
    live worker). Transient infrastructure errors give the chunk back and propagate, so the
    task retries."""
    chunk = precompute_chunk_claim(chunk_id=chunk_id, worker=worker)
    if chunk is None:
        return "skipped"
    beat = partial(precompute_chunk_heartbeat, chunk_id=chunk.pk, claim=chunk.claim)
    with heartbeat_kept(beat=beat, name=f"heartbeat-{chunk.pk}"):
        try:
            failed_rows, error = _compute(chunk)
        except SoftTimeLimitExceeded:
            precompute_chunk_split(chunk=chunk)
            return "split"
        except TRANSIENT_ERRORS:
            precompute_chunk_release(chunk=chunk)
            raise
        except Exception:  # the adapter itself is broken: loading, encoding or predicting
            failed_rows, error = chunk.rows, traceback.format_exc()
    precompute_chunk_finish(chunk=chunk, error=error, failed_rows=failed_rows)
    return "failed" if error else "done"


# --------------------------------------------------------------------------- computing


def _compute(chunk: PrecomputeChunk) -> tuple[int, str]:
    """Compute and store one chunk. Returns (failed rows, the first traceback or "")."""
    study = chunk.job.study
    adapter = registered_model_adapter(model=study.model)
    items = item_map(item_ids=chunk.item_ids)
    if chunk.stage == Stage.PREDICTIONS:
        ordered = [items[pk] for pk in chunk.item_ids]
        predictions = predict(
            adapter,
            [item_raw(i) for i in ordered],
            batch_size=len(ordered),
            lines={i.external_id: i.line_number for i in ordered},
        )
        for item, prediction in zip(ordered, predictions):
            prediction_store(
                model=study.model,
                item=item,
                label=prediction.label,
                probabilities=[float(p) for p in prediction.probabilities],
            )
        return 0, ""
    if chunk.stage == Stage.STRENGTH:
        _modality_interactions(study=study, adapter=adapter, items=[items[pk] for pk in chunk.item_ids])
        return 0, ""
    if chunk.stage == Stage.FEATURES:
        _decision_features(study=study, adapter=adapter, method=chunk.method)
        return 0, ""
    if chunk.stage == Stage.COUNTERFACTUAL:
        counterfactual_rows(study=study, adapter=adapter, items=[items[pk] for pk in chunk.item_ids])
        return 0, ""
    targets = {int(item_id): labels for item_id, labels in chunk.targets.items()}
    views = study_required_methods(study=study).get(chunk.method, set())
    if chunk.stage == Stage.ATTRIBUTION and "share" in views:
        # Rows another study computed may lack the share bars: draw them from their summary.
        for row in model_explanations_lacking_share_view(model=study.model, method=chunk.method, targets=targets):
            explanation_share_view_add(
                explanation=row, share_png=render_share_bars(shares=row.summary["modality_share"])
            )
    pairs = model_explanation_pairs_to_draw(model=study.model, method=chunk.method, views=views, targets=targets)
    if not pairs:
        return 0, ""
    raws = {item_id: item_raw(items[item_id]) for item_id, _ in pairs}
    compute = {
        Stage.ATTRIBUTION: _attribution_rows,
        Stage.MULTIVIZ: _multiviz_rows,
        Stage.ATTENTION: _attention_rows,
    }.get(chunk.stage, _interaction_rows)
    try:
        # The MultiViz and attention rows encode their items themselves.
        own_batches = (Stage.MULTIVIZ, Stage.ATTENTION)
        batch = None if chunk.stage in own_batches else adapter.encode([raws[item_id] for item_id, _ in pairs])
        # Batch rows are the pairs: a NaN error names their items by id and line.
        with nonfinite_naming(items=[raws[item_id] for item_id, _ in pairs], places=_item_places(items.values())):
            compute(
                study=study,
                adapter=adapter,
                batch=batch,
                pairs=pairs,
                raws=raws,
                items=items,
                views=views,
                method=chunk.method,
            )
    except (SoftTimeLimitExceeded, *TRANSIENT_ERRORS):
        raise
    except Exception:
        error = traceback.format_exc()
        explanation_store_failed(model=study.model, method=chunk.method, pairs=pairs, error=error)
        return len(pairs), error
    return 0, ""


def _modality_interactions(*, study, adapter, items: list) -> None:
    """The 2x2 modality interaction of the predicted class for each item (4 forward passes
    each), stored once per model and item for the interaction-strength filter."""
    predicted = model_predicted_labels(model=study.model, item_ids=[i.pk for i in items])
    items = [i for i in items if i.pk in predicted]
    if not items:
        return
    label_index = {label: k for k, label in enumerate(study.model.labels)}
    raws = [item_raw(i) for i in items]
    with nonfinite_naming(items=raws, places=_item_places(items)):
        results = modality_interaction(
            adapter, adapter.encode(raws), targets=[label_index[predicted[i.pk]] for i in items]
        )
    for item, result in zip(items, results):
        explanation_store(
            model=study.model,
            item=item,
            method=MODALITY_INTERACTION,
            target_label=predicted[item.pk],
            status="done",
            summary=result.to_json(),
        )


def _item_places(items) -> dict[str, str]:
    """Each item's dataset line by id, for NaN errors (``nonfinite_naming``)."""
    return item_lines_places(lines={item.external_id: item.line_number for item in items})


def _rows_by_item(pairs: list[tuple[int, str]]) -> dict[int, list[int]]:
    """Batch rows of each item, in pair order."""
    rows: dict[int, list[int]] = {}
    for k, (item_id, _) in enumerate(pairs):
        rows.setdefault(item_id, []).append(k)
    return rows


def _attribution_rows(*, study, adapter, batch, pairs, raws, items, views, method) -> None:
    """Attributions by the study's method for every pair, rendered (heatmap, token
    highlights, share bars when an arm shows them) and stored."""
    label_index = {label: k for k, label in enumerate(study.model.labels)}
    attributions = attribute(adapter, batch, method=method, targets=[label_index[label] for _, label in pairs])
    groups = adapter.describe_groups(batch)
    metrics = _metrics_of_predicted(study=study, adapter=adapter, raws=raws, pairs=pairs, attributions=attributions)
    for item_id, rows in _rows_by_item(pairs).items():
        rendered = render_item_views(
            item=raws[item_id], attributions=[attributions[k] for k in rows], groups=groups[rows[0]]
        )
        # Audio, tabular and series views (presentation_modalities.py), drawn only for an arm that shows them.
        modal = render_modality_views(
            item=raws[item_id],
            attributions=[attributions[k] for k in rows],
            groups=groups[rows[0]],
            views=sorted(views),
        )
        for k, view, modal_view in zip(rows, rendered, modal):
            attribution = attributions[k]
            summary = attribution.to_json()
            summary.pop("group_ids", None)
            summary["colour_scales"] = view.colour_scales  # the page states them (presentation.py)
            summary["colour_scales"].update(modal_view.colour_scales)
            if modal_view.table_rows:
                summary["table_view"] = modal_view.table_rows  # the page lays the bars out as text
            explanation_store_attribution(
                model=study.model,
                item=items[item_id],
                method=method,
                target_label=pairs[k][1],
                arrays=attribution.to_arrays(),
                summary=summary,
                image_png=view.image_png,
                tokens=view.tokens,
                share_png=render_share_bars(shares=attribution.modality_share) if "share" in views else None,
                metrics=metrics.get(k),
                modality_pngs=modal_view.pngs,
            )


def _attention_rows(*, study, adapter, batch, pairs, raws, items, views, method) -> None:
    """The attention view of every pair: each item's attention record (per-head attention,
    block shares, rollout, Chefer relevance of its targets) is computed once per (model, item)
    and stored, then drawn as a heatmap and word highlights, candidates on one scale."""
    if not has_attention(adapter):
        raise AdapterError(f"{type(adapter).__name__} has no attention() hook; the attention view needs one")
    source = method.removeprefix(ATTENTION_PREFIX)
    label_index = {label: k for k, label in enumerate(study.model.labels)}
    for item_id, rows in _rows_by_item(pairs).items():
        labels = [pairs[k][1] for k in rows]
        stored = item_attention_row(model=study.model, item_id=item_id)
        record = item_attention_record(row=stored) if stored and set(labels) <= set(stored.targets) else None
        if record is None:
            wanted = sorted(set(labels) | set(stored.targets if stored else []), key=label_index.__getitem__)
            (maps,) = adapter.attention([raws[item_id]], targets=[[label_index[label] for label in wanted]])
            record = attention_record(maps)
            item_attention_store(
                model=study.model,
                item=items[item_id],
                data=record.to_bytes(),
                targets=wanted,
                cross_modal=record.cross_modal,
            )
        groups = adapter.describe_groups(adapter.encode([raws[item_id]]))[0]
        attributions = [
            attention_attribution(
                record,
                groups=groups,
                modalities=adapter.modalities,
                target=label_index[label],
                source=source,
                method=method,
            )
            for label in labels
        ]
        for label, attribution, view in zip(
            labels, attributions, render_item_views(item=raws[item_id], attributions=attributions, groups=groups)
        ):
            summary = attribution.to_json()
            summary.pop("group_ids", None)
            summary["colour_scales"] = view.colour_scales
            summary["note"] = record.note
            explanation_store_attribution(
                model=study.model,
                item=items[item_id],
                method=method,
                target_label=label,
                arrays=attribution.to_arrays(),
                summary=summary,
                image_png=view.image_png,
                tokens=view.tokens,
            )


def _metrics_of_predicted(*, study, adapter, raws: dict, pairs: list[tuple[int, str]], attributions) -> dict[int, dict]:
    """Automatic metrics (deletion/insertion, infidelity, sensitivity, …) of the explanations
    of the model's own answer: the ones the item export and the metric-vs-human analysis read.
    Sensitivity reruns the method, so computing it for every candidate would multiply the cost.
    A metric failure is recorded beside the explanation instead of failing it."""
    predicted = model_predicted_labels(model=study.model, item_ids=raws)
    rows = [k for k, (item_id, label) in enumerate(pairs) if predicted.get(item_id) == label]
    if not rows:
        return {}
    try:
        batch = adapter.encode([raws[pairs[k][0]] for k in rows])
        values = explanation_metrics(
            adapter, batch, [attributions[k] for k in rows], seed=study.seed, sensitivity_samples=3
        )
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        return {k: {"error": f"{exc.__class__.__name__}: {exc}"} for k in rows}
    return {k: _finite_json(v) for k, v in zip(rows, values)}


def _finite_json(value):
    """JSON columns reject NaN and Infinity: store an undefined metric as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _interaction_rows(*, study, adapter, batch, pairs, raws, items, views, method) -> None:
    """The cross-modal interaction matrix by the study's interaction method (matrix view and
    top patch-word pairs) for every pair. Cost per pair: see
    ``interactions.cross_modal_interaction``."""
    label_index = {label: k for k, label in enumerate(study.model.labels)}
    results = cross_modal_interaction(adapter, batch, method=method, targets=[label_index[label] for _, label in pairs])
    groups = adapter.describe_groups(batch)
    for item_id, rows in _rows_by_item(pairs).items():
        first = results[rows[0]]
        rendered = render_interaction_views(
            item=raws[item_id],
            modalities=first.modalities,
            matrices=[results[k].matrix for k in rows],
            group_ids=(first.group_ids_a, first.group_ids_b),
            groups=groups[rows[0]],
        )
        for k, view in zip(rows, rendered):
            result = results[k]
            matrix = np.asarray(result.matrix, dtype=np.float64)
            explanation_store_interaction(
                model=study.model,
                item=items[item_id],
                method=method,
                target_label=pairs[k][1],
                arrays=result.to_arrays(),
                matrix_png=view.matrix_png,
                top_pairs_png=view.top_pairs_png,
                summary={
                    "modalities": list(result.modalities),
                    "shape": list(matrix.shape),
                    "max_abs": float(np.max(np.abs(matrix))) if matrix.size else 0.0,
                    "options": result.options,
                    "colour_scale": view.colour_scale,
                    "patch_grid": view.patch_grid,
                },
            )


# --------------------------------------------------------------------------- MultiViz stages 3 and 4

#: Features drawn per candidate in the ``features`` view, bars in the ``prediction`` view, and
#: top-activating dataset examples per feature.
FEATURES_SHOWN, BARS_SHOWN, EXAMPLES_PER_FEATURE = 3, 5, 3
#: At most this many features get example views (the most influential: largest
#: ``max_c |weight| × std(activation)``), so the dataset chunk stays bounded for wide layers;
#: a feature without examples is still drawn, with this input alone.
MAX_FEATURES_WITH_EXAMPLES = 64


def _feature_rows(
    adapter, raws: list[dict], features: list[int], *, n_features: int, method: str, batch_size: int
) -> tuple[list, list]:
    """Attributions of ``features[k]``'s activation in ``raws[k]``, ``batch_size`` rows per
    call, and each row's ``describe_groups``."""
    out, groups = [], []
    for start in range(0, len(raws), max(1, batch_size)):
        batch = adapter.encode(raws[start : start + batch_size])
        out += feature_attributions(
            adapter, batch, features=features[start : start + batch_size], n_features=n_features, method=method
        )
        groups += adapter.describe_groups(batch)
    return out, groups


def _decision_features(*, study, adapter, method: str) -> None:
    """Every dataset item's decision features and logits, the sparse head fitted on them, and
    each used feature's top-activating items drawn with that feature's heatmap. Stored per
    (model, dataset, method): keyed by model, not study. Seeds are fixed, not the study's, so
    every study reads the same head."""
    items = list(study.dataset.items.order_by("line_number"))
    raws = [item_raw(item) for item in items]
    batch_size = settings.MMEVAL_PRECOMPUTE_BATCH_SIZE
    with nonfinite_naming(places=_item_places(items)):
        table = decision_features(adapter, raws, batch_size=batch_size)
    head = fit_sparse_head(table.activations, table.logits, seed=0)
    used = sorted({f for support in head.support() for f in support})
    tops = {f: top_activating(table.activations, f, k=EXAMPLES_PER_FEATURE) for f in used}
    influence = np.abs(head.weights).max(axis=0) * table.activations.std(axis=0)
    drawn = sorted(sorted(used, key=lambda f: (-influence[f], f))[:MAX_FEATURES_WITH_EXAMPLES])
    pairs = [(f, row) for f in drawn for row in tops[f]]
    attributions, groups = _feature_rows(
        adapter,
        [raws[row] for _, row in pairs],
        [f for f, _ in pairs],
        n_features=table.n_features,
        method=method,
        batch_size=batch_size,
    )
    examples: dict[int, list[bytes]] = {}
    image = next((m for m in adapter.modalities if m in IMAGE_MODALITIES), None)
    if image is not None:
        by_feature: dict[int, list[tuple[int, np.ndarray]]] = {}
        for (f, row), attribution, item_groups in zip(pairs, attributions, groups):
            by_feature.setdefault(f, []).append((row, feature_heat(attribution, item_groups, image)))
        for f, rows in by_feature.items():
            scale = shared_scale(*[heat for _, heat in rows])  # one scale per feature's examples
            examples[f] = [
                example_thumbnail_png(pixels=image_pixels(raws[row][image], heat.shape), heat=heat, scale=scale)
                for row, heat in rows
            ]
    decision_features_store(
        model=study.model,
        dataset=study.dataset,
        method=method,
        examples=examples,
        arrays={
            "item_ids": np.asarray([item.pk for item in items], dtype=np.int64),
            "activations": table.activations,
            "logits": table.logits,
            **head.to_arrays(),
        },
        summary={
            "n_features": table.n_features,
            "sparse": head.to_json(),
            "top_items": {str(f): [items[row].pk for row in tops[f]] for f in used},
        },
    )


def _sparse_head_of(arrays) -> SparseHead:
    return SparseHead(
        weights=arrays["sparse/weights"],
        intercept=arrays["sparse/intercept"],
        alpha=0.0,
        alphas=[],
        fidelity=None,
        train_fidelity=0.0,
        train_rows=arrays["sparse/train_rows"],
        test_rows=arrays["sparse/test_rows"],
    )


def _multiviz_rows(*, study, adapter, batch, pairs, raws, items, views, method) -> None:
    """Per (item, candidate): the candidate's top features by contribution to its sparse
    score, what activates each in this input and which dataset items activate it most
    (``features``), and the contributions as bars (``prediction``). Every candidate of an
    item is drawn together, on one colour scale and one axis."""
    stored = model_decision_features(model=study.model, dataset_id=study.dataset_id, method=study.explanation_method)
    if stored is None:
        raise RuntimeError("the model's decision features over this dataset are missing; precompute again")
    with np.load(os.path.join(settings.MEDIA_ROOT, stored.arrays_file)) as npz:
        arrays = {key: npz[key] for key in npz.files}
    head = _sparse_head_of(arrays)
    row_of = {int(pk): k for k, pk in enumerate(arrays["item_ids"])}
    label_index = {label: k for k, label in enumerate(study.model.labels)}
    n_features = int(arrays["activations"].shape[1])
    examples = {int(f): [_read_media(path) for path in paths] for f, paths in stored.example_views.items()}
    per_item = _rows_by_item(pairs)
    # The bars add up to each candidate's sparse score: top terms, the other terms, the intercept.
    parts = {
        k: score_parts(head, arrays["activations"][row_of[item_id]], target=label_index[label], k=BARS_SHOWN)
        for item_id, rows in per_item.items()
        for k in rows
        for label in [pairs[k][1]]
    }
    tops = {k: part.top for k, part in parts.items()}
    wanted = [
        (item_id, f)
        for item_id, rows in per_item.items()
        for f in sorted({f for k in rows for f, _ in tops[k][:FEATURES_SHOWN]})
    ]
    attributions, _ = _feature_rows(
        adapter,
        [raws[item_id] for item_id, _ in wanted],
        [f for _, f in wanted],
        n_features=n_features,
        method=study.explanation_method,
        batch_size=settings.MMEVAL_PRECOMPUTE_BATCH_SIZE,
    )
    by_item: dict[int, dict[int, object]] = {}
    for (item_id, f), attribution in zip(wanted, attributions):
        by_item.setdefault(item_id, {})[f] = attribution
    image = next((m for m in adapter.modalities if m in IMAGE_MODALITIES), None)
    for item_id, rows in per_item.items():
        raw = raws[item_id]
        groups = adapter.describe_groups(adapter.encode([raw]))[0]
        found = by_item.get(item_id, {})
        shape = next(iter(found.values())).maps[image].shape[-2:] if image and found else None
        rendered = render_feature_views(
            pixels=image_pixels(raw[image], shape) if shape is not None else None,
            candidates=[tops[k] for k in rows],
            attributions=found,
            groups=groups,
            examples=examples,
            features_shown=FEATURES_SHOWN,
            scores=[parts[k] for k in rows],
        )
        for k, view in zip(rows, rendered):
            top = tops[k]
            explanation_store_multiviz(
                model=study.model,
                item=items[item_id],
                method=method,
                target_label=pairs[k][1],
                arrays={
                    "features": np.asarray([f for f, _ in top], dtype=np.int64),
                    "contributions": np.asarray([c for _, c in top], dtype=np.float64),
                },
                summary={
                    "features": [{"feature": f, "contribution": c} for f, c in top],
                    "other_features": parts[k].rest,
                    "base": parts[k].base,
                    "sparse_score": parts[k].score,
                    "fidelity": (stored.summary.get("sparse") or {}).get("fidelity"),
                },
                features_png=view.features_png,
                prediction_png=view.prediction_png,
            )


def _read_media(path: str) -> bytes:
    with open(os.path.join(settings.MEDIA_ROOT, path), "rb") as f:
        return f.read()


def dashboard_refresh(*, study_id: int, worker: str) -> str:
    """A study's dashboard recomputed in the background (``annotations.services.dashboard``),
    its lease kept alive by the heartbeat thread while the analysis runs."""
    from annotations.services.dashboard import dashboard_refresh_run

    return dashboard_refresh_run(
        study_id=study_id,
        worker=worker,
        keep_alive=lambda beat: heartbeat_kept(beat=beat, name=f"dashboard-{study_id}-heartbeat"),
    )
