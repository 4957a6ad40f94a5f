"""The verification task (annotations/study_tasks.py) end to end through Django's test client:
the spec, form and API accept it and refuse what it cannot run with a clear 4xx; participants
of both arms walk a study, their verdicts are stored and exported; the dashboard shows the
reliance card."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.analysis.exclusions import participant_quality
from annotations.analysis.report import jsonable
from annotations.analysis.responses import load_responses_csv
from annotations.analysis.verification import verification_reliance
from annotations.models import Participant, Prediction, Response, Study
from annotations.selectors.exports import PARTICIPANT_COLUMNS, study_participant_records, study_responses_csv_lines
from annotations.services.analysis import study_report_compute
from annotations.services.datasets import dataset_import
from annotations.services.spec import SpecError, study_spec_load, study_spec_parse
from annotations.services.studies import ConditionSpec, study_create_from_spec
from tests.builders.dashboard import dashboard_computed_at_once  # noqa: F401  (fixture)
from tests.builders.studies import build_study, make_model, write_dataset

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "Verify",
    "task": "verification",
    "dataset": "shapes",
    "model": "toy",
    "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap", "tokens"]}],
    "items": {"n": 6, "per_participant": 3, "raters_per_item": 2},
}


@pytest.fixture
def owned(alice, tmp_path):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 16))
    make_model(alice)
    return alice


def test_the_spec_takes_the_task_and_defaults_to_forward(owned):
    study = study_create_from_spec(owner=owned, spec=study_spec_parse(data=SPEC, owner=owned))
    assert (study.task, study.explanation_display) == ("verification", "predicted_unlabelled")
    forward = study_spec_parse(data={**SPEC, "name": "F", "task": "forward"}, owner=owned)
    assert forward.task == "forward" and forward.explanation_display == "all_candidates"
    assert study_spec_parse(data={k: v for k, v in SPEC.items() if k != "task"}, owner=owned).task == "forward"


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        (
            {"task": "rating2"},
            "task",
            "unknown value 'rating2'; known: forward, verification, counterfactual, rationale, rating, preference",
        ),
        ({"phases": {"learning_items": 2}}, "phases.learning_items", "no practice items"),
        ({"phases": {"pretest": True}}, "phases.pretest", "no warm-up phase"),
        ({"explanations": {"display": "all_candidates"}}, "explanations.display", "shows predicted_unlabelled"),
    ],
)
def test_what_verification_cannot_run_is_refused_naming_the_field(owned, overrides, field, message):
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data={**SPEC, **overrides}, owner=owned)
    assert caught.value.field == field and message in str(caught.value)


def test_the_spec_template_loads_through_the_parser(alice, tmp_path):
    template = Path(__file__).resolve().parents[2] / "docs" / "specs" / "verification.yaml"
    data = study_spec_load(path=template)
    dataset_import(owner=alice, name="mine", jsonl_path=write_dataset(tmp_path / "src", 48))
    make_model(alice, name="mymodel")
    text = template.read_text().replace("YOUR-DATASET", "mine").replace("YOUR-MODEL", "mymodel")
    spec = study_spec_parse(data=yaml.safe_load(text), owner=alice)
    assert data["task"] == spec.task == "verification"
    assert [c.name for c in spec.conditions] == ["baseline", "ig"] and spec.learning_items == 0


@pytest.mark.urls("tests.api.urls")
def test_the_api_creates_a_verification_study_and_refuses_bad_values_with_400(owned):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owned).key}")
    created = client.post("/api/studies/", SPEC, format="json")
    assert created.status_code == 201, created.content
    assert (
        created.json()["task"] == "verification" and Study.objects.get(pk=created.json()["id"]).task == "verification"
    )
    for overrides, field in (
        ({"task": "rating2"}, "task"),
        ({"task": ["verification"]}, "task"),
        ({"phases": {"learning_items": 1}}, "phases.learning_items"),
    ):
        bad = client.post("/api/studies/", {**SPEC, "name": f"bad {field}", **overrides}, format="json")
        assert bad.status_code == 400 and bad.json()["field"] == field, bad.content


def test_the_form_offers_the_task_and_shows_its_errors_under_the_field(owned):
    from annotations.models import Dataset, RegisteredModel

    client = Client()
    client.force_login(owned)
    assert 'name="task"' in client.get("/studies/new/").content.decode()
    form = {
        "name": "Designed verification",
        "task": "verification",
        "dataset": Dataset.objects.get(owner=owned).pk,
        "model": RegisteredModel.objects.get(owner=owned).pk,
        "seed": 1,
        "n_items": 6,
        "items_per_participant": 3,
        "raters_per_item": 2,
        "candidate_mode": "top_k",
        "n_candidates": 2,
        "n_distractors": 0,
        "explanation_method": "integrated_gradients",
        "interaction_method": "second_order",
        "explanation_display": "predicted_unlabelled",
        "lease_minutes": 30,
        "learning_items": 2,
        "attention_checks": 0,
        "min_rt_ms": 0,
        "arm_0_name": "baseline",
        "arm_1_name": "ig",
        "arm_1_views": ["heatmap"],
    }
    refused = client.post("/studies/new/", form)
    assert refused.status_code == 200 and not Study.objects.filter(name="Designed verification").exists()
    assert "no practice items" in refused.content.decode()
    form["learning_items"] = 0
    assert client.post("/studies/new/", form).status_code == 302
    study = Study.objects.get(name="Designed verification")
    assert study.task == "verification"
    assert 'value="verification" selected' in client.get(f"/studies/{study.pk}/edit/").content.decode()


@pytest.fixture
def verification_study(alice, tmp_path):
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=20,
        n_items=8,
        items_per_participant=4,
        raters_per_item=2,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="verification",
        explanation_display="predicted_unlabelled",
        survey=True,
        name="verify",
    )


def test_participants_of_both_arms_walk_a_verification_study_and_their_verdicts_are_stored(
    verification_study, alice, dashboard_computed_at_once
):
    study = verification_study
    seen_arms, walked = set(), 0
    for _ in range(2):  # arms are dealt in permuted blocks: two entries cover both
        client = Client()
        entry = client.get(f"/s/{study.public_id}/")
        assert "say whether each answer is right" in entry.content.decode()
        client.post(f"/s/{study.public_id}/consent/")
        instructions = client.get(f"/s/{study.public_id}/instructions/").content.decode()
        assert "Say whether the model's answer is right" in instructions
        client.post(f"/s/{study.public_id}/instructions/")
        participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
        seen_arms.add(participant.condition.name)
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
            assert f'<b id="model-answer">{prediction}</b>' in page and 'name="verdict"' in page
            assert ('id="shared-evidence"' in page) == bool(participant.condition.views)
            assert 'name="guess"' not in page
            # a malformed verdict or a guess instead of one is refused, and nothing is stored
            for bad in ({"verdict": "maybe", "confidence": 3}, {"guess": prediction, "confidence": 3}):
                refused = client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", bad)
                assert refused.status_code == 400 and "yes or no" in refused.content.decode()
            assert not Response.objects.filter(assignment=assignment).exists()
            # accept every other answer: verdict correctness then follows the model's
            verdict = "yes" if walked % 2 == 0 else "no"
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"verdict": verdict, "confidence": 4})
            response = Response.objects.get(assignment=assignment)
            assert (response.verdict, response.guess, response.confidence) == (verdict == "yes", "", 4)
            # the same answer again is idempotent; a different one is refused (409)
            again = client.post(
                f"/s/{study.public_id}/item/{assignment.public_id}/", {"verdict": verdict, "confidence": 4}
            )
            assert again.status_code == 302
            changed = "no" if verdict == "yes" else "yes"
            other = client.post(
                f"/s/{study.public_id}/item/{assignment.public_id}/", {"verdict": changed, "confidence": 4}
            )
            assert other.status_code == 409
            walked += 1
        assert client.post(f"/s/{study.public_id}/survey/", {"helpfulness": 4, "comment": ""}).status_code == 302
        participant.refresh_from_db()
        assert participant.phase == "done"
    assert seen_arms == {"baseline", "ig"}

    rows = list(csv.DictReader(io.StringIO("".join(study_responses_csv_lines(study=study)))))
    assert len(rows) == walked == 8
    for row in rows:
        assert row["task"] == "verification" and row["guess"] == "" and row["correct_simulation"] == ""
        said_right = row["verdict"] == "True"
        assert row["verdict_correct"] == str(said_right == (row["model_correct"] == "True"))

    researcher = Client()
    researcher.force_login(alice)
    detail = researcher.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="task-summary"' in detail and '<b id="share-wrong">50%</b>' in detail
    dashboard = researcher.get(f"/studies/{study.pk}/dashboard/?section=all").content.decode()
    assert 'id="verification-table"' in dashboard and "Over-reliance: P(accept | model wrong)" in dashboard
    assert 'id="accuracy-table"' not in dashboard
    assert '<b id="share-model-wrong">' in dashboard
    summary = researcher.get(f"/studies/{study.pk}/exports/summary.csv")
    assert summary.status_code == 200
    assert "verification.all.arms.ig.over_reliance.estimate" in b"".join(summary.streaming_content).decode()

    # Reproducible: the analysis recomputed from the CSV export equals the service's.
    report = study_report_compute(study=study, n_resamples=100)
    frame = load_responses_csv(io.StringIO("".join(study_responses_csv_lines(study=study))))
    for section, data in (("all", frame.drop(columns=["excluded"])), ("after_exclusions", frame)):
        again = verification_reliance(data, baseline="baseline", seed=study.seed, n_resamples=100)
        assert jsonable(again) == report["verification"][section]
    # A participant's test accuracy is their share of right verdicts, in the export and the analysis alike.
    exported = {
        row["participant"]: row["test_accuracy"]
        for row in (dict(zip(PARTICIPANT_COLUMNS, r)) for r in study_participant_records(study=study))
    }
    quality = participant_quality(frame)
    assert len(quality) == 2
    for row in quality.itertuples():
        mine = frame[frame["participant"] == row.participant]
        assert (
            row.test_accuracy
            == pytest.approx(mine["verdict_correct"].mean())
            == pytest.approx(exported[row.participant])
        )
    printed = io.StringIO()
    call_command("analyze", str(study.pk), "--n-resamples", "50", stdout=printed)
    assert "over_reliance" in printed.getvalue() and "model wrong on " in printed.getvalue()


def test_attention_checks_of_a_verification_study_ask_for_a_verdict(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap"])],
        task="verification",
        explanation_display="predicted_unlabelled",
        attention_checks=2,
        name="checks",
    )
    for attentive in (True, False):
        client = Client()
        client.get(f"/s/{study.public_id}/")
        client.post(f"/s/{study.public_id}/consent/")
        client.post(f"/s/{study.public_id}/instructions/")
        participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
        checks = list(participant.assignments.filter(kind="attention"))
        assert len(checks) == 2 and {c.expected_answer for c in checks} <= {"yes", "no"}
        assert all(c.expected_answer == "yes" for c in checks if c.check_type == "gold")
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            assert 'name="verdict"' in page
            verdict = "yes"
            if assignment.kind == "attention":
                asked = assignment.expected_answer
                if assignment.check_type == "instructed":
                    assert f"please answer <b>{asked.capitalize()}</b>" in page
                verdict = asked if attentive else {"yes": "no", "no": "yes"}[asked]
            else:
                assert "please answer" not in page
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"verdict": verdict, "confidence": 3})
        passed = list(participant.responses.filter(is_attention_check=True).values_list("attention_passed", flat=True))
        assert passed == [attentive, attentive]


def test_the_form_starts_from_the_tasks_design_without_javascript(owned):
    """``/studies/new/?task=verification`` fills in what that task runs; an unknown task is ignored."""
    client = Client()
    client.force_login(owned)
    page = client.get("/studies/new/?task=verification").content.decode()
    assert 'value="verification" selected' in page
    assert 'name="learning_items" value="0"' in page
    assert 'value="predicted_unlabelled" selected' in page
    plain = client.get("/studies/new/?task=nonsense")
    assert plain.status_code == 200 and 'name="learning_items" value="4"' in plain.content.decode()
    assert 'id="task-designs"' in plain.content.decode()
