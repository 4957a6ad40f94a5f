"""Writes of rationale studies (annotations/study_tasks.py, task ``rationale``): the check of a
participant's marks before they are stored, and the import of aggregated rationales as a
dataset's evidence regions (read by the model report's bias section)."""

from __future__ import annotations

import csv
import io
import json

from django.db import transaction

from annotations.models import Dataset, Item, Study
from annotations.selectors.rationales import rationale_item_layout
from workers.engine.dataset import _line_evidence
from workers.engine.rationale_units import MarksError, rationale_marks_parse

__all__ = ["EvidenceImportError", "MarksError", "dataset_evidence_import", "rationale_marks_check"]


def rationale_marks_check(*, study: Study, item: Item, raw: object) -> dict[str, list]:
    """The marks of an answer in the evidence format, checked against the item's units; raises
    :class:`MarksError` (a message for the participant) when they do not fit."""
    return rationale_marks_parse(raw, rationale_item_layout(study=study, item=item))


class EvidenceImportError(ValueError):
    """An evidence file that cannot be imported: ``errors`` lists every bad line."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or []


def dataset_evidence_import(*, dataset: Dataset, text: str) -> int:
    """Set the ``evidence`` of ``dataset``'s items from a rationale study's **rationale_items**
    export (CSV with ``item`` and ``evidence`` columns) or from JSON lines ``{"id": ...,
    "evidence": {...}}``. Each region is checked as a dataset line's ``evidence`` field is; a row
    with an empty ``evidence`` is skipped. All or nothing: raises :class:`EvidenceImportError`
    listing every bad line (unknown item, malformed region) and stores nothing. Returns the
    number of items updated (an item's previous evidence is replaced)."""
    stripped = text.lstrip()
    entries: list[tuple[int, str, object]] = []
    errors: list[str] = []
    if stripped.startswith("{"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                errors.append(f"line {number}: not JSON")
                continue
            if not isinstance(obj, dict) or "id" not in obj:
                errors.append(f'line {number}: must be an object with "id" and "evidence"')
                continue
            entries.append((number, str(obj["id"]), obj.get("evidence")))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not {"item", "evidence"} <= set(reader.fieldnames or []):
            raise EvidenceImportError("the file needs the columns 'item' and 'evidence' (the rationale_items export)")
        for number, row in enumerate(reader, start=2):
            cell = (row.get("evidence") or "").strip()
            if not cell:
                continue
            try:
                entries.append((number, row["item"], json.loads(cell)))
            except ValueError:
                errors.append(f"line {number}: the evidence is not JSON")
    items = {item.external_id: item for item in dataset.items.filter(external_id__in=[e[1] for e in entries])}
    modalities = tuple(dataset.modalities)
    updates = []
    for number, item_id, evidence in entries:
        if evidence in (None, {}, ""):
            continue
        item = items.get(item_id)
        if item is None:
            errors.append(f"line {number}: no item '{item_id[:80]}' in dataset '{dataset.name}'")
            continue
        problems: list[str] = []
        # the dataset import's own check of the field (workers/engine/dataset.py)
        region = _line_evidence({"evidence": evidence}, modalities, problems)
        if problems:
            errors.extend(f"line {number}: {p}" for p in problems)
            continue
        item.evidence = region
        updates.append(item)
    if errors:
        raise EvidenceImportError(f"{len(errors)} line(s) cannot be imported; nothing was stored", errors)
    with transaction.atomic():
        Item.objects.bulk_update(updates, ["evidence"], batch_size=500)
    return len(updates)
