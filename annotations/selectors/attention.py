"""Reads of stored attention (``ItemAttention``): the record of one (model, item) and the items
a model has attention for, for the precompute stage and the researcher's attention page."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from annotations.models import ItemAttention, RegisteredModel
from workers.engine.attention import AttentionRecord


def item_attention_row(*, model: RegisteredModel | int, item_id: int) -> ItemAttention | None:
    model_id = model if isinstance(model, int) else model.pk
    return ItemAttention.objects.filter(model_id=model_id, item_id=item_id).select_related("item").first()


def item_attention_record(*, row: ItemAttention) -> AttentionRecord:
    """The stored record (``AttentionRecord.from_bytes`` of the row's file)."""
    return AttentionRecord.from_bytes((Path(settings.MEDIA_ROOT) / row.arrays_file).read_bytes())


def model_attention_items(*, model: RegisteredModel) -> list[ItemAttention]:
    """The model's stored attention rows, in item order, with their items."""
    return list(ItemAttention.objects.filter(model=model).select_related("item").order_by("item_id"))
