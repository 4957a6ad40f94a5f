"""The codebook: every column every export emits is described in it, and every entry is a
column some export emits; ``docs/CODEBOOK.md`` is its text; the download gives the study's own
columns. And what the items export now says: probabilities keyed by label, the items' fields."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from annotations.models import Item, Prediction
from annotations.selectors.codebook import CODEBOOK, CODEBOOK_COLUMNS, codebook_entry, codebook_markdown
from annotations.selectors.exports import (
    EXPORTS,
    report_summary_csv_lines,
    study_codebook_csv_lines,
    study_items_csv_lines,
    study_participants_csv_lines,
    study_responses_csv_lines,
)
from annotations.services.analysis import study_report_compute
from tests.builders.answered_study import build_answered_study

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "CODEBOOK.md"


@pytest.fixture
def answered(alice, tmp_path):
    return build_answered_study(alice, tmp_path)


def _read(lines) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO("".join(lines)))
    return list(reader.fieldnames), list(reader)


def _emitted(study) -> dict[str, list[str]]:
    report = study_report_compute(study=study, n_resamples=20, n_permutations=20)
    return {
        "responses": _read(study_responses_csv_lines(study=study))[0],
        "items": _read(study_items_csv_lines(study=study))[0],
        "participants": _read(study_participants_csv_lines(study=study))[0],
        "summary": _read(report_summary_csv_lines(report=report))[0],
    }


def test_every_emitted_column_is_in_the_codebook_and_every_entry_is_emitted(answered):
    emitted = _emitted(answered)
    assert set(emitted) | {"codebook"} == set(EXPORTS) and set(CODEBOOK) == set(emitted)
    for export, columns in emitted.items():
        missing = [c for c in columns if codebook_entry(export=export, column=c) is None]
        assert not missing, f"{export} columns with no codebook entry: {missing}"
        unused = [e.name for e in CODEBOOK[export] if not any(e.matches(c) is not None for c in columns)]
        assert not unused, f"codebook entries of {export} that no column has: {unused}"
    # the families are filled in by this study's fields, methods and modalities
    method = answered.explanation_method
    assert {"item:image", "item:text"} <= set(emitted["items"])
    assert f"metric:{method}:modality_share:text" in emitted["items"]
    entry, values = codebook_entry(export="items", column=f"metric:{method}:modality_share:text")
    assert entry.name == "metric:<method>:modality_share:<modality>"
    assert values == {"method": method, "modality": "text"}
    for entries in CODEBOOK.values():
        for entry in entries:
            assert entry.type and entry.meaning.endswith((".", ")")), entry


def test_the_codebook_download_lists_the_studys_columns_in_export_order(answered, tmp_path):
    emitted = _emitted(answered)
    header, rows = _read(study_codebook_csv_lines(study=answered))
    assert header == CODEBOOK_COLUMNS
    assert [(r["export"], r["column"]) for r in rows] == [(e, c) for e, cs in emitted.items() for c in cs]
    by_column = {(r["export"], r["column"]): r for r in rows}
    assert by_column[("responses", "rt_ms")]["unit"] == "milliseconds"
    assert by_column[("responses", "confidence")]["unit"] == "1–5 scale"
    # placeholders are filled in: the meaning names the field
    assert "The item's 'text' field" in by_column[("items", "item:text")]["meaning"]
    call_command("export_study", str(answered.pk), what="codebook", out=tmp_path / "codebook.csv")
    assert (tmp_path / "codebook.csv").read_text(encoding="utf-8") == "".join(study_codebook_csv_lines(study=answered))


def test_docs_codebook_is_the_generated_text(tmp_path):
    assert DOCS.read_text(encoding="utf-8") == codebook_markdown(), (
        "docs/CODEBOOK.md is stale: python manage.py codebook --out docs/CODEBOOK.md"
    )
    call_command("codebook", out=tmp_path / "codebook.md")
    assert (tmp_path / "codebook.md").read_text(encoding="utf-8") == codebook_markdown()
    for export, entries in CODEBOOK.items():
        assert f"## {export}.csv" in DOCS.read_text(encoding="utf-8")
        for entry in entries:
            assert f"| `{entry.name}` |" in codebook_markdown()


def test_items_export_keys_probabilities_by_label_and_carries_the_items_fields(answered):
    header, rows = _read(study_items_csv_lines(study=answered))
    labels = list(answered.model.labels)
    fields = list(answered.dataset.modalities)
    first = header.index("evidence") + 1  # the item's fields follow its answer options, group and evidence
    assert header[first : first + len(fields)] == [f"item:{f}" for f in fields]
    for row in rows:
        item = Item.objects.get(dataset=answered.dataset, external_id=row["item"])
        prediction = Prediction.objects.get(model=answered.model, item=item)
        probabilities = json.loads(row["probabilities"])
        assert list(probabilities) == labels
        assert probabilities == dict(zip(labels, prediction.probabilities))
        assert probabilities[row["model_prediction"]] == float(row["prediction_probability"])
        assert row["item:text"] == item.payload["text"]  # the question, as the participant reads it
        assert row["item:image"] == item.payload["image"]


def test_item_text_fields_are_defused_and_structured_fields_are_json(answered):
    item = answered.study_items.select_related("item").first().item
    item.payload = {**item.payload, "text": "=HYPERLINK(1)"}
    item.save(update_fields=["payload"])
    answered.dataset.modalities = [*answered.dataset.modalities, "tabular"]
    answered.dataset.save(update_fields=["modalities"])
    item.payload = {**item.payload, "tabular": {"soil moisture": 0.25}}
    item.save(update_fields=["payload"])
    _, rows = _read(study_items_csv_lines(study=answered))
    mine = next(r for r in rows if r["item"] == item.external_id)
    assert mine["item:text"] == "'=HYPERLINK(1)"
    assert json.loads(mine["item:tabular"]) == {"soil moisture": 0.25}
    assert all(r["item:tabular"] == "" for r in rows if r["item"] != item.external_id)
