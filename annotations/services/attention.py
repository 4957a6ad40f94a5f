"""What the attention stage stores: one compressed record per (model, item)
(``workers.engine.attention.AttentionRecord``), written under MEDIA_ROOT with a random name
and kept in :class:`~annotations.models.ItemAttention` (docs/DESIGN.md, "Attention")."""

from __future__ import annotations

from django.db import transaction

from annotations.models import ItemAttention, RegisteredModel
from annotations.services.explanations import media_write


def item_attention_store(
    *, model: RegisteredModel, item, data: bytes, targets: list[str], cross_modal: bool
) -> ItemAttention:
    """Store one item's attention record. Idempotent per (model, item): a redelivered chunk
    or a later study with more targets replaces the file; the row stays one."""
    path = media_write(folder="attention", suffix=".npz", data=data)
    with transaction.atomic():
        row, _ = ItemAttention.objects.update_or_create(
            model=model,
            item=item,
            defaults={"arrays_file": path, "targets": sorted(set(targets)), "cross_modal": cross_modal},
        )
    return row
