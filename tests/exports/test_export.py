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


def test_browser_timing_is_exported_and_drives_its_exclusion_rules_everywhere(alice, tmp_path):
    """The browser's time, blurs and hidden time go out with each answer beside the server's time;
    the participants export, the participant's page numbers and the analysis frame take the same
    exclusion decision from them. P0 measured (900 ms hidden per item), P1 without JavaScript."""
    from annotations.analysis import participant_quality
    from annotations.models import Participant
    from annotations.selectors.analysis import study_responses_frame
    from annotations.selectors.exports import PARTICIPANT_COLUMNS, study_participant_records
    from annotations.selectors.participants import participant_quality as page_quality
    from annotations.services.participants import (
        assignment_current,
        assignment_serve,
        learning_acknowledge,
        response_submit,
    )

    study = build_study(
        alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=2, exclusion_rules={"max_hidden_ms": 1000}
    )
    sent = {
        "P0": {
            "client_timing": "1",
            "client_rt_ms": "0",
            "client_display_ms": "321",
            "client_blur_count": "1",
            "client_hidden_ms": "900",
        },
        "P1": {},
    }
    for platform_id, fields in sent.items():
        participant = enter_and_start(study, platform_id)
        while (assignment := assignment_current(participant=participant)) is not None:
            assignment_serve(assignment=assignment)
            if assignment.phase == "learning":
                learning_acknowledge(participant=participant, assignment_public_id=assignment.public_id)
                continue
            guess = assignment.expected_answer if assignment.kind == "attention" else assignment.candidate_order[0]
            response_submit(
                participant=participant,
                assignment_public_id=assignment.public_id,
                guess=guess,
                confidence=3,
                client_timing=fields,
            )
    ids = {p.platform_id: str(p.public_id) for p in Participant.objects.filter(study=study)}
    header, rows = _rows("".join(study_responses_csv_lines(study=study)))
    assert {"rt_ms", "client_rt_ms", "client_display_ms", "blur_count", "hidden_ms", "client_timing_flags"} <= set(
        header
    )
    measured = [r for r in rows if r["participant"] == ids["P0"]]
    unmeasured = [r for r in rows if r["participant"] == ids["P1"]]
    assert len(measured) == len(unmeasured) == 2
    for row in measured:
        assert (row["client_rt_ms"], row["client_display_ms"], row["blur_count"], row["hidden_ms"]) == (
            "0",
            "321",
            "1",
            "900",
        )
        assert row["client_timing_flags"] == "" and int(row["rt_ms"]) >= 0
        assert (row["excluded"], row["exclusion_reasons"]) == ("True", "max_hidden_ms")
    for row in unmeasured:
        assert (row["client_rt_ms"], row["blur_count"], row["hidden_ms"]) == ("", "", "")
        assert row["client_timing_flags"] == "no_client_timing" and row["rt_ms"] != ""
        assert (row["excluded"], row["exclusion_reasons"]) == ("False", "")

    participants = {r[1]: dict(zip(PARTICIPANT_COLUMNS, r)) for r in study_participant_records(study=study)}
    p0, p1 = participants[ids["P0"]], participants[ids["P1"]]
    assert (p0["median_client_rt_ms"], p0["n_blurs"], p0["hidden_ms"], p0["excluded"]) == (0.0, 2, 1800.0, True)
    assert (p1["median_client_rt_ms"], p1["n_blurs"], p1["hidden_ms"], p1["excluded"]) == (None, None, None, False)
    for participant in Participant.objects.filter(study=study).select_related("study"):
        expected = ["max_hidden_ms"] if participant.platform_id == "P0" else []
        assert page_quality(participant=participant)["exclusion_reasons"] == expected
    frame = participant_quality(study_responses_frame(study=study), rules=study.exclusion_rules)
    assert frame.set_index("participant")["exclusion_reasons"].to_dict() == {ids["P0"]: "max_hidden_ms", ids["P1"]: ""}
