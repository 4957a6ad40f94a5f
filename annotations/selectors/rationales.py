"""Reads of rationale studies (annotations/study_tasks.py, task ``rationale``): the units an item
offers to mark (workers/engine/rationale_units.py)."""

from __future__ import annotations

import json
import random

from annotations.models import Item, Study
from annotations.study_tasks import study_task
from workers.engine.dataset import modality_kind
from workers.engine.rationale_units import RATIONALE_GRID, rationale_layout
from workers.engine.series import value_text


def rationale_item_layout(*, study: Study, item: Item) -> dict[str, list[str]]:
    """Per markable modality of ``item`` as ``study``'s model sees it, the names of its units."""
    return rationale_layout(list(study.model.modalities), item.payload or {})


def rationale_instructed_marks(*, study: Study, item: Item, rng: random.Random) -> str:
    """An instructed attention check's answer (JSON marks): one unit, drawn at random, of one
    markable part of ``item`` (a cell of the picture, a word, a table row)."""
    layout = rationale_item_layout(study=study, item=item)
    modality = rng.choice(sorted(layout))
    position = rng.randrange(len(layout[modality]))
    unit = layout[modality][position] if modality_kind(modality) == "image" else position
    return json.dumps({modality: [unit]})


def rationale_instruction(*, study: Study, item: Item, expected: str) -> str:
    """What an instructed check asks to mark, as the page names it: "the cell C4 of the picture",
    "the word “red”", "the row “petal_width”"."""
    (modality, (unit,)), *_ = json.loads(expected).items()
    kind = modality_kind(modality)
    if kind == "image":
        return f"the cell {unit} of the picture"
    name = rationale_item_layout(study=study, item=item)[modality][unit]
    return f"the {'row' if kind == 'tabular' else 'word'} “{name}”"


def rationale_page(*, study: Study, item: Item) -> dict:
    """What a rationale page adds to the item page: the gold answer it asks evidence for
    (``evidence_for``) and, per markable modality, its units as the page's boxes
    (``rationale_parts``: ``modality``, ``kind``, ``columns`` of an image's grid, and ``units``
    with the box ``value`` "modality:unit" and its ``label``). Empty for other tasks."""
    if study_task(study.task).answer != "rationale":
        return {}
    parts = []
    for modality, names in rationale_item_layout(study=study, item=item).items():
        kind = modality_kind(modality)
        table = item.payload.get(modality) if kind == "tabular" else None
        units = [
            {
                "value": f"{modality}:{name if kind == 'image' else k}",
                "label": name,
                "position": k,
                # a table row's value, as the input's table shows it
                "shown": value_text(float(table[name])) if table is not None else "",
            }
            for k, name in enumerate(names)
        ]
        parts.append({"modality": modality, "kind": kind, "columns": RATIONALE_GRID[0], "units": units})
    return {"evidence_for": item.gold_label, "rationale_parts": parts}
