"""Precomputed rows of the demo models, kept for the test session (each xdist worker).

Precompute stores its work per model, not per study: predictions, the explanations of each
(item, method) and the decision features over a dataset, and a study on a model that already
holds some of them computes only the rest (``model_explanation_pairs_to_draw``). Many tests
build a demo study on a fresh model over the same items; their engine work is the same every
time. So after a real precompute this module keeps the model's rows (with their files), and
seeds them into the next fresh model of the same adapter, options, weights and items before
its precompute runs: that precompute then goes through the real stages and draws only what no
earlier build drew. Each (item, method) group of rows is kept whole, as one run drew it on one
colour scale: a seeded model is a state a model reaches in production after a few studies.

Nothing is kept across sessions, and the first build of each key computes everything."""

from __future__ import annotations

import hashlib
import io
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings

from annotations.models import DecisionFeatures, Explanation, Prediction, Study
from annotations.services.explanations import media_write

# Fields of an Explanation row copied as they are; files are copied by their bytes.
EXPLANATION_FIELDS = ("method", "target_label", "status", "token_view", "summary", "metrics", "error")


@dataclass
class ModelRows:
    predictions: dict[str, tuple[str, list[float]]] = field(default_factory=dict)  # external id -> label, probabilities
    explanations: list[dict] = field(default_factory=list)
    decision_features: list[dict] = field(default_factory=list)


_kept: dict[str, ModelRows] = {}


def _key(study: Study) -> str:
    """What the engine's outputs depend on: the adapter with its options, the weights it loads
    (seed and cache folder), the device and batch size, and every item of the dataset."""
    model = study.model
    items = [
        (external_id, {key: _stored_file_name(value) for key, value in payload.items()}, gold)
        for external_id, payload, gold in study.dataset.items.order_by("line_number").values_list(
            "external_id", "payload", "gold_label"
        )
    ]
    digest = hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()
    return json.dumps(
        [
            model.adapter_path,
            model.adapter_options,
            model.labels,
            os.environ.get("MMEVAL_DEMO_SEED", ""),
            os.environ.get("MMEVAL_CACHE_DIR", ""),
            settings.MMEVAL_DEVICE,
            settings.MMEVAL_PRECOMPUTE_BATCH_SIZE,
            digest,
        ],
        sort_keys=True,
        default=str,
    )


def _stored_file_name(value):
    """A stored file by its name alone: the name is its content's hash, the folder is the dataset's."""
    if isinstance(value, str) and value and (Path(settings.MEDIA_ROOT) / value).is_file():
        return Path(value).name
    return value


def _read(path: str) -> bytes:
    return (Path(settings.MEDIA_ROOT) / path).read_bytes() if path else b""


def _write(data: bytes, path: str, folder: str) -> str:
    return media_write(folder=folder, suffix=Path(path).suffix, data=data) if path else ""


def _folder(path: str) -> str:
    return str(Path(path).parent)


def precomputed_rows_seed(*, study: Study) -> int:
    """Store the rows kept for this study's key into its model (which must hold none yet).
    Returns how many explanation rows were seeded."""
    kept = _kept.get(_key(study))
    model = study.model
    if kept is None or model.predictions.exists() or model.explanations.exists():
        return 0
    item_of = {item.external_id: item for item in study.dataset.items.all()}
    Prediction.objects.bulk_create(
        Prediction(model=model, item=item_of[external_id], label=label, probabilities=probabilities)
        for external_id, (label, probabilities) in kept.predictions.items()
    )
    rows = []
    for row in kept.explanations:
        files = row["files"]
        rows.append(
            Explanation(
                model=model,
                item=item_of[row["item"]],
                arrays_file=_write(files["arrays_file"], row["arrays_file"], _folder(row["arrays_file"])),
                image_view=_write(files["image_view"], row["image_view"], _folder(row["image_view"])),
                extra_views={
                    view: _write(files["extra_views"][view], path, _folder(path))
                    for view, path in row["extra_views"].items()
                },
                **{name: row[name] for name in EXPLANATION_FIELDS},
            )
        )
    Explanation.objects.bulk_create(rows)
    pk_of = {external_id: item.pk for external_id, item in item_of.items()}
    for row in kept.decision_features:
        DecisionFeatures.objects.create(
            model=model,
            dataset=study.dataset,
            method=row["method"],
            status=row["status"],
            error=row["error"],
            arrays_file=_write(
                _item_ids_remapped(row["arrays"], row["item_ids"], pk_of), row["arrays_file"], "explanations"
            ),
            summary=_top_items_mapped(row["summary"], pk_of),
            example_views={
                f: [_write(data, path, "views") for data, path in zip(row["examples"][f], paths)]
                for f, paths in row["example_views"].items()
            },
        )
    return len(rows)


def _top_items_mapped(summary: dict, mapping: dict) -> dict:
    """The summary with its top-activating items' IDs mapped (pk to external id, or back)."""
    if "top_items" not in summary:
        return dict(summary)
    return {**summary, "top_items": {f: [mapping[i] for i in ids] for f, ids in summary["top_items"].items()}}


def _item_ids_remapped(arrays: bytes, external_ids: list[str], pk_of: dict[str, int]) -> bytes:
    with np.load(io.BytesIO(arrays)) as npz:
        content = {key: npz[key] for key in npz.files}
    content["item_ids"] = np.asarray([pk_of[e] for e in external_ids], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **content)
    return buffer.getvalue()


def precomputed_rows_keep(*, study: Study) -> None:
    """Keep every finished row of the study's model (its seeded rows and what this precompute
    drew, whole groups as they stand), for the next build of the same key."""
    model = study.model
    external_of = dict(study.dataset.items.values_list("pk", "external_id"))
    kept = ModelRows()
    for item_id, label, probabilities in model.predictions.values_list("item_id", "label", "probabilities"):
        kept.predictions[external_of[item_id]] = (label, probabilities)
    for row in model.explanations.filter(status=Explanation.Status.DONE):
        kept.explanations.append(
            {
                "item": external_of[row.item_id],
                "arrays_file": row.arrays_file,
                "image_view": row.image_view,
                "extra_views": dict(row.extra_views),
                "files": {
                    "arrays_file": _read(row.arrays_file),
                    "image_view": _read(row.image_view),
                    "extra_views": {view: _read(path) for view, path in row.extra_views.items()},
                },
                **{name: getattr(row, name) for name in EXPLANATION_FIELDS},
            }
        )
    for row in model.decision_features.filter(dataset=study.dataset, status=DecisionFeatures.Status.DONE):
        arrays = _read(row.arrays_file)
        with np.load(io.BytesIO(arrays)) as npz:
            item_ids = [external_of[int(pk)] for pk in npz["item_ids"]]
        kept.decision_features.append(
            {
                "method": row.method,
                "status": row.status,
                "error": row.error,
                "arrays_file": row.arrays_file,
                "arrays": arrays,
                "item_ids": item_ids,
                "summary": _top_items_mapped(row.summary, external_of),
                "example_views": dict(row.example_views),
                "examples": {f: [_read(path) for path in paths] for f, paths in row.example_views.items()},
            }
        )
    _kept[_key(study)] = kept


@contextmanager
def precomputed_rows_set_aside():
    """Builds inside start from nothing kept (the test of this module); the session's kept
    rows are back afterwards, so later tests still reuse them."""
    saved = dict(_kept)
    _kept.clear()
    try:
        yield
    finally:
        _kept.clear()
        _kept.update(saved)
