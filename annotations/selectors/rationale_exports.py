"""The rationales of a rationale study (annotations/study_tasks.py), as the statistics and the
exports read them (researcher previews left out; test-phase answers only).

* **rationales** export: one row per participant × item, the units each marked per markable
  modality as a space-separated list in the dataset's evidence format (``units:<modality>``:
  cell names for a picture, 0-based positions otherwise) and how many units the modality offered
  (``n_units:<modality>``);
* **rationale_items** export: one row per item, the aggregated rationale (majority of the item's
  annotators, ``annotations.analysis.rationale``) per modality with each unit's support, and an
  ``evidence`` column holding the item's evidence region as JSON (picture and words; not table
  rows, :data:`MODEL_ORDERED_KINDS`; the picture's cells as the area they cover on the rationale
  grid, ``dataset.cells_coverage``, since a model's patch grid may differ): the file imports back
  as the dataset's ``evidence`` (``services.rationales.dataset_evidence_import``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from annotations.models import Assignment, Explanation, Participant, Response, Study
from annotations.selectors.codebook import TASK_CODEBOOK
from annotations.selectors.exports import csv_lines
from annotations.selectors.rationales import rationale_item_layout
from workers.engine.dataset import cells_coverage, modality_kind
from workers.engine.rationale_units import MARKABLE_KINDS, RATIONALE_GRID, unit_positions

if TYPE_CHECKING:  # pandas is imported where used, not at URL load (downloads.py imports this module)
    import pandas as pd

RATIONALE_EXPORTS = ("rationales", "rationale_items")
#: Modalities whose units are numbered as the model's groups are (the grid's cells row by row, a
#: text's words). A table's rows are numbered in the page's name order, while the model's groups
#: come in its adapter's order, which the web process does not know: table rows are exported but
#: neither scored for plausibility nor written into the evidence column.
MODEL_ORDERED_KINDS = ("image", "text")
# the columns that do not depend on the modalities, as the codebook lists them
RATIONALE_BASE_COLUMNS = [c.name for c in TASK_CODEBOOK["rationales"] if not c.is_pattern]
RATIONALE_ITEM_BASE_COLUMNS = [c.name for c in TASK_CODEBOOK["rationale_items"] if not c.is_pattern]


def study_markable_modalities(*, study: Study) -> list[str]:
    """The model's modalities a participant can mark, in the model's order."""
    return [m for m in study.model.modalities if modality_kind(m) in MARKABLE_KINDS]


def _responses(study: Study):
    # An attention check's marks follow an instruction, not the evidence: the responses export
    # has them (``is_attention_check``, ``attention_passed``), the rationale exports do not.
    return (
        Response.objects.filter(participant__study=study, phase=Assignment.Phase.TEST, is_attention_check=False)
        .exclude(participant__platform=Participant.Platform.PREVIEW)
        .exclude(rationale=None)
        .select_related("participant", "condition", "item")
        .order_by("participant_id", "id")
    )


def study_rationale_records(*, study: Study) -> Iterator[dict]:
    """One dict per participant × item: the base columns, then per markable modality its marked
    units (a list in the evidence format) under ``units:<m>`` and its unit count under
    ``n_units:<m>`` (0 where the item offers none), and the layout (``_layout``) for the frame."""
    layouts: dict[int, dict[str, list[str]]] = {}
    modalities = study_markable_modalities(study=study)
    for response in _responses(study).iterator(chunk_size=2000):
        item = response.item
        if item.pk not in layouts:
            layouts[item.pk] = rationale_item_layout(study=study, item=item)
        layout = layouts[item.pk]
        row = {
            "participant": response.participant.public_id,
            "condition": response.condition.name,
            "item": item.external_id,
            "gold_label": response.gold_label,
            "confidence": response.confidence,
            "rt_ms": response.rt_ms,
            "created_at": response.created_at.isoformat(),
            "_layout": layout,
        }
        for m in modalities:
            row[f"units:{m}"] = list((response.rationale or {}).get(m, []))
            row[f"n_units:{m}"] = len(layout.get(m, []))
        yield row


def study_rationale_frame(*, study: Study) -> pd.DataFrame:
    """The long frame of ``annotations.analysis.rationale``: ``participant``, ``item``,
    ``modality``, ``n_units``, ``units`` (0-based unit numbers), one row per participant × item ×
    markable modality the item offers (an empty ``units``: the participant saw that part and
    marked nothing in it)."""
    import pandas as pd

    rows = []
    for record in study_rationale_records(study=study):
        for modality, names in record["_layout"].items():
            rows.append(
                {
                    "participant": record["participant"],
                    "item": record["item"],
                    "modality": modality,
                    "n_units": len(names),
                    "units": unit_positions(modality, record.get(f"units:{modality}", []), names),
                }
            )
    return pd.DataFrame(rows, columns=["participant", "item", "modality", "n_units", "units"])


def study_rationale_attributions(*, study: Study, items: list[str]) -> pd.DataFrame:
    """Per attribution method stored for the study's model, the group scores of the gold answer's
    explanation per item and markable modality, cut to the item's units (a text's padding groups
    follow its words): ``method``, ``item``, ``modality``, ``scores``. An explanation whose groups
    are fewer than the item's units (for a picture: not exactly its grid's cells, as a model with
    another patch grid), or with a null score, is left out (the analysis lists it as missing)."""
    import pandas as pd

    rows = []
    explanations = (
        Explanation.objects.filter(
            model=study.model, item__dataset=study.dataset, item__external_id__in=items, status=Explanation.Status.DONE
        )
        .select_related("item")
        .only("method", "target_label", "summary", "item__external_id", "item__gold_label", "item__payload")
    )
    for explanation in explanations.iterator(chunk_size=500):
        item = explanation.item
        if explanation.target_label != item.gold_label:
            continue
        scores = (explanation.summary or {}).get("group_scores") or {}
        for modality, names in rationale_item_layout(study=study, item=item).items():
            if modality_kind(modality) not in MODEL_ORDERED_KINDS:
                continue
            values = scores.get(modality)
            # a score stored as null (not finite at precompute) leaves the case unscored; so does a
            # picture whose model patches are not the rationale grid's cells (another patch grid:
            # its first scores would be read as the wrong cells)
            if not isinstance(values, list):
                continue
            fits = len(values) == len(names) if modality_kind(modality) == "image" else len(values) >= len(names)
            if fits and None not in values[: len(names)]:
                rows.append(
                    {
                        "method": explanation.method,
                        "item": item.external_id,
                        "modality": modality,
                        "scores": [float(v) for v in values[: len(names)]],
                    }
                )
    return pd.DataFrame(rows, columns=["method", "item", "modality", "scores"])


def _space(units: list) -> str:
    return " ".join(str(u) for u in units)


def study_rationales_csv_lines(*, study: Study) -> Iterator[str]:
    """The **rationales** export (module docstring)."""
    modalities = study_markable_modalities(study=study)
    columns = RATIONALE_BASE_COLUMNS + [c for m in modalities for c in (f"units:{m}", f"n_units:{m}")]
    rows = (
        {**record, **{f"units:{m}": _space(record[f"units:{m}"]) for m in modalities}}
        for record in study_rationale_records(study=study)
    )
    return csv_lines(columns=columns, rows=rows)


def study_rationale_item_rows(*, study: Study) -> list[dict]:
    """The **rationale_items** rows: per item with annotations, ``item``, ``gold_label``,
    ``n_annotators``, ``evidence`` (the majority region per modality, JSON; empty when no unit
    has a majority) and per markable modality ``units:<m>``, ``support:<m>`` and ``n_units:<m>``."""
    from annotations.analysis.rationale import aggregate_rationales

    frame = study_rationale_frame(study=study)
    if frame.empty:
        return []
    gold = dict(
        study.dataset.items.filter(external_id__in=frame["item"].unique()).values_list("external_id", "gold_label")
    )
    layouts = {
        item.external_id: rationale_item_layout(study=study, item=item)
        for item in study.dataset.items.filter(external_id__in=frame["item"].unique())
    }
    rows: dict[str, dict] = {}
    for agg in aggregate_rationales(frame).itertuples():
        names = layouts[agg.item][agg.modality]
        kind = modality_kind(agg.modality)
        units = [names[u] if kind == "image" else u for u in agg.units]
        row = rows.setdefault(
            agg.item, {"item": agg.item, "gold_label": gold.get(agg.item, ""), "n_annotators": 0, "_evidence": {}}
        )
        row["n_annotators"] = max(row["n_annotators"], agg.n_annotators)
        row[f"units:{agg.modality}"] = _space(units)
        row[f"support:{agg.modality}"] = " ".join(f"{s:.3f}" for s in agg.support)
        row[f"n_units:{agg.modality}"] = agg.n_units
        if units and kind in MODEL_ORDERED_KINDS:
            # a picture's cells are on the rationale grid, not the model's: written as the area
            # they cover, which the model report reduces to any model's patch grid
            row["_evidence"][agg.modality] = cells_coverage(units, RATIONALE_GRID) if kind == "image" else units
    for row in rows.values():
        evidence = row.pop("_evidence")
        row["evidence"] = json.dumps(evidence, separators=(",", ":")) if evidence else ""
    return [rows[item] for item in sorted(rows)]


def study_rationale_items_csv_lines(*, study: Study) -> Iterator[str]:
    """The **rationale_items** export (module docstring)."""
    modalities = study_markable_modalities(study=study)
    columns = RATIONALE_ITEM_BASE_COLUMNS + [
        c for m in modalities for c in (f"units:{m}", f"support:{m}", f"n_units:{m}")
    ]
    return csv_lines(columns=columns, rows=study_rationale_item_rows(study=study))


def rationale_export_lines(*, study: Study, what: str) -> Iterator[str]:
    """One of :data:`RATIONALE_EXPORTS`."""
    if what == "rationales":
        return study_rationales_csv_lines(study=study)
    return study_rationale_items_csv_lines(study=study)
