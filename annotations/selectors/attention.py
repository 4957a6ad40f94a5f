"""Reads of stored attention (``ItemAttention``): the record of one (model, item) and the items
a model has attention for, for the precompute stage and the researcher's attention page."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from annotations.models import ItemAttention, RegisteredModel
from annotations.selectors.studies import study_item
from workers.engine.attention import AttentionRecord
from workers.engine.attention_views import head_summary_svg, record_matrix


def item_attention_row(*, model: RegisteredModel | int, item_id: int) -> ItemAttention | None:
    model_id = model if isinstance(model, int) else model.pk
    return ItemAttention.objects.filter(model_id=model_id, item_id=item_id).select_related("item").first()


def item_attention_record(*, row: ItemAttention) -> AttentionRecord:
    """The stored record (``AttentionRecord.from_bytes`` of the row's file)."""
    return AttentionRecord.from_bytes((Path(settings.MEDIA_ROOT) / row.arrays_file).read_bytes())


def model_attention_items(*, model: RegisteredModel) -> list[ItemAttention]:
    """The model's stored attention rows, in item order, with their items."""
    return list(ItemAttention.objects.filter(model=model).select_related("item").order_by("item_id"))


def item_attention_page(*, study, item_pk: int) -> dict[str, Any] | None:
    """What the researcher's attention page shows for one item of ``study``'s pool with
    ``study``'s model: the streams' units and sizes, the patch grid's side, the head summary
    (an SVG, for a model whose attention crosses modalities), the record's note and the other
    pool items with stored attention. None when the item is not in the study's pool (as the
    item's own page); the context without ``record`` when nothing is stored for it yet."""
    item = study_item(study=study, item_pk=item_pk)
    if item is None:
        return None
    pool = set(study.study_items.values_list("item_id", flat=True))
    others = [
        {"pk": row.item_id, "external_id": row.item.external_id}
        for row in model_attention_items(model=study.model)
        if row.item_id in pool
    ]
    row = item_attention_row(model=study.model, item_id=item.pk)
    context: dict[str, Any] = {"item": item, "others": others, "has_image": bool(item.payload.get("image"))}
    if row is None:
        return context
    record = item_attention_record(row=row)
    streams = []
    for s in record.streams:
        n_layers, n_heads = s.attention.shape[:2]
        streams.append(
            {
                "name": s.name,
                "layers": n_layers,
                "heads": n_heads,
                "units": [
                    {"index": u, "label": unit.label, "modality": unit.modality, "group": unit.group}
                    for u, unit in enumerate(s.units)
                ],
            }
        )
    patches = sum(1 for s in record.streams for unit in s.units if unit.modality == "image" and not unit.special)
    joint = next((s for s in record.streams if s.cross is not None), None)
    return {
        **context,
        "record": record,
        "data": {
            "cross_modal": record.cross_modal,
            "streams": streams,
            "grid": int(round(math.sqrt(patches))),
            "layers": max(s["layers"] for s in streams),
            "heads": max(s["heads"] for s in streams),
        },
        "layer_choices": list(range(min(s["layers"] for s in streams))),
        "head_choices": list(range(min(s["heads"] for s in streams))),
        "words": [
            {"index": u, "label": unit.label}
            for u, unit in enumerate(record.stream_of("text").units)
            if unit.modality == "text" and not unit.special
        ],
        "head_summary": head_summary_svg(joint.cross) if joint is not None else "",
        "relevance": _relevance_rows(record, labels=list(study.model.labels), targets=row.targets),
        "note": record.note,
        "targets": row.targets,
    }


def item_attention_matrix(*, study, item_pk: int, stream: str, layer: str, head: str) -> list[list[float]] | None:
    """One unit matrix of the item's stored attention (``attention_views.record_matrix``),
    rounded for the page; None when nothing is stored. Raises ValueError on a bad choice."""
    if study_item(study=study, item_pk=item_pk) is None:
        return None
    row = item_attention_row(model=study.model, item_id=item_pk)
    if row is None:
        return None
    matrix = record_matrix(item_attention_record(row=row), stream=stream, layer=layer, head=head)
    return np.round(matrix, 4).tolist()


def _relevance_rows(record: AttentionRecord, *, labels: list[str], targets: list[str]) -> list[dict[str, Any]]:
    """Per stored label, Chefer et al.'s relevance of its words (as written, in order) and its
    three most relevant patches, for the researcher (the page names the labels)."""
    rows = []
    for label in targets:
        if label not in labels or labels.index(label) not in record.targets:
            continue
        by_group = record.relevance_by_group(labels.index(label))
        text = record.stream_of("text")
        words = [
            {"label": text.units[u].label, "value": by_group["text"].get(text.units[u].group, 0.0)}
            for u in text.word_units()
        ]
        image = record.stream_of("image")
        names = {image.units[u].group: image.units[u].label for u in image.patch_units()}
        top = sorted(by_group["image"].items(), key=lambda kv: -kv[1])[:3]
        rows.append({"label": label, "words": words, "patches": [{"label": names[g], "value": v} for g, v in top]})
    return rows
