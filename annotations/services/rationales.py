"""Writes of rationale studies (annotations/study_tasks.py, task ``rationale``): the check of a
participant's marks before they are stored, and the import of aggregated rationales as a
dataset's evidence regions (read by the model report's bias section)."""

from __future__ import annotations

import csv
import io
import json

from django.db import transaction

from annotations.models import Dataset, Item, Study
from annotations.selectors.rationale_exports import study_rationale_attributions, study_rationale_frame
from annotations.selectors.rationales import rationale_item_layout
from workers.engine.dataset import _line_evidence
from workers.engine.rationale_units import MarksError, rationale_marks_parse

__all__ = [
    "EvidenceImportError",
    "MarksError",
    "dataset_evidence_import",
    "rationale_marks_check",
    "study_rationale_report",
]


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


def study_rationale_report(*, study: Study, settings: dict, n_resamples: int) -> dict:
    """A rationale study's report (``annotations.analysis.rationale``): agreement between
    annotators (and each annotator's leave-one-out IoU), and the plausibility of each stored attribution method against the aggregated
    rationales, per modality and per gold answer (slice ``answer:<label>``). Raises ``ValueError``
    when there is nothing to analyse."""
    from annotations.analysis.rationale import (
        aggregate_rationales,
        annotator_agreement,
        rationale_agreement,
        rationale_plausibility,
    )
    from annotations.analysis.report import jsonable

    frame = study_rationale_frame(study=study)
    if frame.empty:
        raise ValueError("no rationales yet")
    agreement = rationale_agreement(frame, seed=settings["seed"], n_resamples=n_resamples)
    aggregated = aggregate_rationales(frame)
    items = sorted(aggregated["item"].unique())
    attributions = study_rationale_attributions(study=study, items=items)
    gold = dict(study.dataset.items.filter(external_id__in=items).values_list("external_id", "gold_label"))
    plausibility: dict = {"unavailable": "no stored attribution of the gold answer covers the marked items"}
    if not attributions.empty:
        try:
            plausibility = rationale_plausibility(
                aggregated,
                attributions,
                slices={item: f"answer:{label}" for item, label in gold.items()},
                seed=settings["seed"],
                n_resamples=n_resamples,
            )
        except ValueError as exc:
            plausibility = {"unavailable": str(exc)}
    return jsonable(
        {
            "study": {
                "id": study.pk,
                "public_id": study.public_id,
                "name": study.name,
                "task": study.task,
                "baseline": settings["baseline"],
                "seed": settings["seed"],
                "n_resamples": int(n_resamples),
                "n_permutations": 0,
                "explanation_method": study.explanation_method,
            },
            "task": study.task,
            "rationale": {
                "agreement": agreement,
                "plausibility": plausibility,
                "n_items_with_rationale": int((aggregated["units"].map(len) > 0).sum()),
                # lowest first: a careless annotator stands out
                "annotators": {
                    row.participant: {"n_cases": int(row.n_cases), "loo_iou": row.loo_iou}
                    for row in annotator_agreement(frame).itertuples()
                },
            },
        }
    )
