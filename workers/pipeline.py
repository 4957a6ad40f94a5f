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

from annotations.models import Explanation, Item, PrecomputeJob, Prediction, Study
from annotations.selectors import item_as_raw
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
from workers.engine.presentation import render_item_views
from workers.engine.registry import load_adapter

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
    """Run (or finish) a precompute job. A failing adapter fails the job with its traceback."""
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
        pool_size = int(study.design.get("n_items", 0)) or len(items)
        total, done = len(items) + pool_size, len(items) - len(todo)

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

        pool = study_select_items(study=study)
        total = len(items) + len(pool)
        targets = study_explanation_targets(study=study)
        failed, first_error = _explain_pool(study=study, adapter=adapter, targets=targets,
                                            batch_size=batch_size, advance=advance)
        advance(len(pool) - len(targets), failed=failed)
        error = f"{failed} explanation(s) failed. The first error:\n\n{first_error}" if failed else ""
        precompute_job_finish(job=job, error=error)
    except Exception:
        precompute_job_finish(job=job, error=traceback.format_exc())
    return {"status": job.status, "done": job.done, "total": job.total}


def _explain_pool(*, study: Study, adapter, targets: dict[int, list[str]], batch_size: int,
                  advance: Callable[..., None]) -> tuple[int, str]:
    """Explain every (item, candidate) pair that is not stored yet. Returns how many failed,
    and the first traceback."""
    method, model = study.explanation_method, study.model
    stored = set(
        Explanation.objects.filter(model=model, method=method, status=Explanation.Status.DONE,
                                   item_id__in=list(targets)).values_list("item_id", "target_label")
    )
    items = {i.pk: i for i in Item.objects.filter(pk__in=list(targets))}
    label_index = {label: k for k, label in enumerate(model.labels)}
    failed, first_error = 0, ""
    # Whole items per chunk, so one item's candidates share a colour scale.
    item_ids = sorted(targets)
    per_chunk = max(1, batch_size // max(1, max((len(v) for v in targets.values()), default=1)))
    for chunk_ids in _chunks(item_ids, per_chunk):
        pairs = [(item_id, label) for item_id in chunk_ids for label in targets[item_id]
                 if (item_id, label) not in stored]
        if not pairs:
            advance(len(chunk_ids))
            continue
        raws = {item_id: item_as_raw(items[item_id]) for item_id in chunk_ids}
        try:
            batch = adapter.encode([raws[item_id] for item_id, _ in pairs])
            attributions = attribute(adapter, batch, method=method,
                                     targets=[label_index[label] for _, label in pairs])
            groups = adapter.describe_groups(batch)
            for item_id in chunk_ids:
                rows = [k for k, (i, _) in enumerate(pairs) if i == item_id]
                if not rows:
                    continue
                views = render_item_views(item=raws[item_id], attributions=[attributions[k] for k in rows],
                                          groups=groups[rows[0]])
                for k, view in zip(rows, views):
                    _store_explanation(study=study, item=items[item_id], label=pairs[k][1],
                                       attribution=attributions[k], view=view)
        except Exception:
            error = traceback.format_exc()
            for item_id, label in pairs:
                explanation_store(model=model, item=items[item_id], method=method, target_label=label,
                                  status=Explanation.Status.FAILED, error=error)
            failed += len(pairs)
            first_error = first_error or error
        advance(len(chunk_ids), failed=failed)
    return failed, first_error


def _store_explanation(*, study: Study, item: Item, label: str, attribution, view) -> None:
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
    )
