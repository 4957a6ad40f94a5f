"""CSV export: one row per response, simulation scored against the model, not the gold label."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command

from annotations.models import Prediction, Response
from annotations.selectors.exports import study_responses_csv_lines
from annotations.services.participants import participant_consent, participant_preview_start, participant_start
from tests.builders.studies import answer_all, build_study, enter_and_start

pytestmark = pytest.mark.django_db

REQUIRED = [
    "study",
    "condition",
    "participant",
    "item",
    "model_prediction",
    "gold_label",
    "guess",
    "correct_simulation",
    "confidence",
    "rt_ms",
    "created_at",
]


@pytest.fixture
def answered(alice, tmp_path):
    """A study with real responses: some guesses equal the model's prediction, some equal the
    gold label where the model was wrong (a correct answer, but a wrong simulation)."""
    study = build_study(alice, tmp_path, n_items=8, items_per_participant=4, raters_per_item=2, n_candidates=0)
    predictions = {p.item_id: p.label for p in Prediction.objects.filter(model=study.model)}

    def guess(assignment):
        if assignment.position % 2 == 0:
            return predictions[assignment.item_id]
        return assignment.item.gold_label

    for k in range(4):
        answer_all(enter_and_start(study, f"P{k}"), pick=guess, confidence=1 + k)
    # A researcher's preview is not data.
    preview = participant_preview_start(study=study)
    participant_consent(participant=preview)
    answer_all(participant_start(participant=preview))
    return study


def _rows(text: str) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames), list(reader)


def test_export_has_the_required_columns_and_one_row_per_response(answered):
    header, rows = _rows("".join(study_responses_csv_lines(study=answered)))

    assert set(REQUIRED) <= set(header)
    real = Response.objects.filter(participant__study=answered).exclude(participant__platform="preview")
    assert real.count() == 16
    assert Response.objects.filter(participant__platform="preview").exists()
    assert len(rows) == real.count()

    by_key = {
        (str(r.participant.public_id), r.item.external_id): r
        for r in real.select_related("participant", "item", "condition")
    }
    assert len(by_key) == 16
    seen = set()
    for row in rows:
        response = by_key[(row["participant"], row["item"])]
        seen.add((row["participant"], row["item"]))
        assert row["study"] == answered.public_id
        assert row["condition"] == response.condition.name
        assert row["model_prediction"] == response.model_prediction
        assert row["gold_label"] == response.gold_label
        assert row["guess"] == response.guess
        assert int(row["confidence"]) == response.confidence
        assert int(row["rt_ms"]) == response.rt_ms
        assert row["created_at"] == response.created_at.isoformat()
    assert seen == set(by_key)


def test_correct_simulation_compares_the_guess_with_the_model_not_the_gold_label(answered):
    _, rows = _rows("".join(study_responses_csv_lines(study=answered)))

    for row in rows:
        assert row["correct_simulation"] == str(row["guess"] == row["model_prediction"])
    # The cases that tell the two apart are really there.
    right_answer_wrong_simulation = [r for r in rows if r["guess"] == r["gold_label"] != r["model_prediction"]]
    wrong_answer_right_simulation = [r for r in rows if r["guess"] == r["model_prediction"] != r["gold_label"]]
    assert right_answer_wrong_simulation and wrong_answer_right_simulation
    assert {r["correct_simulation"] for r in right_answer_wrong_simulation} == {"False"}
    assert {r["correct_simulation"] for r in wrong_answer_right_simulation} == {"True"}


def test_export_of_a_study_without_responses_is_just_the_header(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="quiet")
    header, rows = _rows("".join(study_responses_csv_lines(study=study)))
    assert set(REQUIRED) <= set(header)
    assert rows == []


def test_export_study_command_writes_the_same_csv(answered, tmp_path):
    path = tmp_path / "out.csv"

    call_command("export_study", str(answered.pk), out=path)

    written = path.read_text(encoding="utf-8")
    assert written == "".join(study_responses_csv_lines(study=answered))
    assert len(_rows(written)[1]) == 16


def test_public_ids_are_safe_on_a_command_line():
    """A public id starting with '-' would be read as an option by ``export_study``."""
    from annotations.models import _public_token

    ids = [_public_token() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)


def test_export_study_command_finds_the_study_by_public_id(answered, tmp_path):
    path = tmp_path / "by-public-id.csv"

    call_command("export_study", answered.public_id, out=path)

    written = path.read_text(encoding="utf-8")
    assert written == "".join(study_responses_csv_lines(study=answered))
    assert len(_rows(written)[1]) == 16
