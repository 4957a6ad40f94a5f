"""A study whose model has a hand-made attention record stored for one item: no model is run,
so the researcher's attention page can be tested in a few milliseconds of setup."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from annotations.models import StudyItem
from annotations.services.attention import item_attention_store
from annotations.services.datasets import dataset_import
from annotations.services.studies import study_create
from tests.builders.studies import TWO_ARMS, make_model, write_dataset
from workers.engine.attention import AttentionMaps, AttentionStream, Unit, attention_record, patch_label

GRID = 2  # a 2x2 patch grid
WORDS = ("what", "colour", "is")


def hand_maps(item_id: str, *, layers: int = 2, heads: int = 2) -> AttentionMaps:
    """A joint stream [CLS], three words, [SEP], [IMG], four patches. Word ``w`` (position
    ``1 + w``) attends only to patch ``w`` in every layer and head, so each word's row over
    the patches is a different one-hot; every other position attends to itself."""
    units = [Unit("text", -1, "[CLS]")]
    units += [Unit("text", GRID * GRID + w, word) for w, word in enumerate(WORDS)]
    units += [Unit("text", -1, "[SEP]"), Unit("image", -1, "[IMG]")]
    units += [Unit("image", k, patch_label(k, GRID)) for k in range(GRID * GRID)]
    n = len(units)
    first_patch = n - GRID * GRID
    a = np.eye(n)
    for w in range(len(WORDS)):
        a[1 + w] = 0.0
        a[1 + w, first_patch + w] = 1.0
    stream = AttentionStream(
        name="joint",
        attention=np.broadcast_to(a, (layers, heads, n, n)).copy(),
        unit_of=np.arange(n),
        units=units,
        pooled=0,
    )
    return AttentionMaps(item_id=item_id, streams=[stream], cross_modal=True)


def attention_study(owner, tmp_path: Path):
    """A study (heatmap arm) of a toy model with two pool items, the hand record stored for
    the first."""
    dataset = dataset_import(owner=owner, name="shapes", jsonl_path=write_dataset(tmp_path / "data", 6))
    model = make_model(owner)
    study = study_create(
        owner=owner,
        name="attention page",
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
    )
    item, other = dataset.items.order_by("line_number")[:2]
    for pooled in (item, other):  # the pool, as precompute selects it (the page shows pool items)
        StudyItem.objects.create(study=study, item=pooled)
    record = attention_record(hand_maps(item.external_id))
    item_attention_store(model=model, item=item, data=record.to_bytes(), targets=[], cross_modal=True)
    return study, item
