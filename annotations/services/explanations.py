"""What precompute stores: predictions and explanations (arrays on disk, rendered views,
summaries) and the decision features of MultiViz's stages 3 and 4, each once per (model, item[,
method, target]) so a redelivered chunk stores nothing twice (docs/DESIGN.md, "Precompute")."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings

from annotations.models import (
    DecisionFeatures,
    Explanation,
    Item,
    Prediction,
    RegisteredModel,
)


def prediction_store(*, model: RegisteredModel, item, label: str, probabilities: list[float]) -> Prediction:
    """Idempotent: a redelivered task finds the row and leaves it."""
    prediction, _ = Prediction.objects.get_or_create(
        model=model, item=item, defaults={"label": label, "probabilities": probabilities}
    )
    return prediction


def explanation_store(
    *,
    model: RegisteredModel,
    item,
    method: str,
    target_label: str,
    status: str,
    arrays_file: str = "",
    image_view: str = "",
    token_view: list | None = None,
    summary: dict | None = None,
    error: str = "",
    extra_views: dict | None = None,
    metrics: dict | None = None,
) -> Explanation:
    """Store one explanation. Idempotent per (model, item, method, target): a redelivery
    overwrites a failed row with its retry but never duplicates a row."""
    explanation, _ = Explanation.objects.update_or_create(
        model=model,
        item=item,
        method=method,
        target_label=target_label,
        defaults={
            "status": status,
            "arrays_file": arrays_file,
            "image_view": image_view,
            "token_view": token_view or [],
            "summary": summary or {},
            "error": error,
            "extra_views": extra_views or {},
            "metrics": metrics or {},
        },
    )
    return explanation


def media_write(*, folder: str, suffix: str, data: bytes) -> str:
    """Store bytes under MEDIA_ROOT with a random name (no label, no item id) and return the
    relative path. The name is written last, so a reader never sees a partial file."""
    directory = Path(settings.MEDIA_ROOT) / folder
    directory.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    partial = directory / f".{name}.part"
    partial.write_bytes(data)
    path = directory / f"{name}{suffix}"
    os.replace(partial, path)
    return str(path.relative_to(settings.MEDIA_ROOT))


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def explanation_store_attribution(
    *,
    model: RegisteredModel,
    item,
    method: str,
    target_label: str,
    arrays: dict[str, np.ndarray],
    summary: dict,
    image_png: bytes | None,
    tokens: list,
    share_png: bytes | None = None,
    metrics: dict | None = None,
    modality_pngs: dict[str, bytes] | None = None,
) -> Explanation:
    """Store a finished attribution with its rendered views (heatmap, token highlights and,
    when an arm shows them, the modality share bars and the audio, table and series views,
    ``modality_pngs``: view name -> PNG)."""
    extra_views = {"share": media_write(folder="views", suffix=".png", data=share_png)} if share_png else {}
    extra_views.update(
        {view: media_write(folder="views", suffix=".png", data=png) for view, png in (modality_pngs or {}).items()}
    )
    return explanation_store(
        model=model,
        item=item,
        method=method,
        target_label=target_label,
        status=Explanation.Status.DONE,
        arrays_file=media_write(folder="explanations", suffix=".npz", data=_npz(arrays)),
        image_view=media_write(folder="views", suffix=".png", data=image_png) if image_png else "",
        token_view=tokens,
        summary=summary,
        metrics=metrics,
        extra_views=extra_views,
    )


def explanation_store_interaction(
    *,
    model: RegisteredModel,
    item,
    method: str,
    target_label: str,
    arrays: dict[str, np.ndarray],
    summary: dict,
    matrix_png: bytes,
    top_pairs_png: bytes | None,
) -> Explanation:
    """Store a cross-modal interaction matrix with its views (matrix and top pairs)."""
    return explanation_store(
        model=model,
        item=item,
        method=method,
        target_label=target_label,
        status=Explanation.Status.DONE,
        arrays_file=media_write(folder="explanations", suffix=".npz", data=_npz(arrays)),
        image_view=media_write(folder="views", suffix=".png", data=matrix_png),
        summary=summary,
        extra_views={"top_pairs": media_write(folder="views", suffix=".png", data=top_pairs_png)}
        if top_pairs_png
        else {},
    )


def explanation_store_multiviz(
    *,
    model: RegisteredModel,
    item,
    method: str,
    target_label: str,
    arrays: dict[str, np.ndarray],
    summary: dict,
    features_png: bytes,
    prediction_png: bytes,
) -> Explanation:
    """Store one candidate's MultiViz views of an item: what activates its top features
    (``features``) and the sparse weights behind it (``prediction``)."""
    return explanation_store(
        model=model,
        item=item,
        method=method,
        target_label=target_label,
        status=Explanation.Status.DONE,
        arrays_file=media_write(folder="explanations", suffix=".npz", data=_npz(arrays)),
        summary=summary,
        extra_views={
            "features": media_write(folder="views", suffix=".png", data=features_png),
            "prediction": media_write(folder="views", suffix=".png", data=prediction_png),
        },
    )


def decision_features_store(
    *,
    model: RegisteredModel,
    dataset,
    method: str,
    arrays: dict[str, np.ndarray],
    summary: dict,
    examples: dict[int, list[bytes]],
) -> DecisionFeatures:
    """Store the model's decision features over a dataset with its sparse head and each
    feature's top-activating example views. Idempotent per (model, dataset, method)."""
    row, _ = DecisionFeatures.objects.update_or_create(
        model=model,
        dataset=dataset,
        method=method,
        defaults={
            "status": DecisionFeatures.Status.DONE,
            "error": "",
            "summary": summary,
            "arrays_file": media_write(folder="explanations", suffix=".npz", data=_npz(arrays)),
            "example_views": {
                str(f): [media_write(folder="views", suffix=".png", data=png) for png in pngs]
                for f, pngs in examples.items()
            },
        },
    )
    return row


def explanation_store_failed(*, model: RegisteredModel, method: str, pairs: list[tuple[int, str]], error: str) -> None:
    """Record that these (item ID, label) explanations failed, with the traceback the
    researcher sees on the item page."""
    for item_id, label in pairs:
        explanation_store(
            model=model,
            item=Item(pk=item_id),
            method=method,
            target_label=label,
            status=Explanation.Status.FAILED,
            error=error,
        )


def explanation_share_view_add(*, explanation: Explanation, share_png: bytes) -> None:
    """Add the share-bar view to a row stored without it (by a study that did not show it)."""
    path = media_write(folder="views", suffix=".png", data=share_png)
    Explanation.objects.filter(pk=explanation.pk).update(extra_views={**explanation.extra_views, "share": path})
