"""The counterfactual task (annotations/study_tasks.py) through Django's test client: the spec,
the form and the API take it and refuse what it cannot run, naming the field; participants of
both arms walk a study with a warm-up, their guesses are scored against the model's answer on
the edit, exported, analysed (equal from the CSV), printed by ``analyze`` and shown on the
dashboard."""

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

from annotations.analysis.counterfactual import counterfactual_simulation
from annotations.analysis.report import jsonable
from annotations.analysis.responses import load_responses_csv
from annotations.models import CounterfactualEdit, Dataset, Participant, Prediction, RegisteredModel, Response, Study
from annotations.services.analysis import study_report_compute
from annotations.services.datasets import dataset_import
from annotations.services.spec import SpecError, study_spec_load, study_spec_parse
from annotations.services.studies import ConditionSpec, study_create_from_spec, study_launch
from tests.builders.counterfactual import make_counterfactual_edits
from tests.builders.dashboard import dashboard_computed_at_once  # noqa: F401  (fixture)
from tests.builders.studies import build_study, make_model, write_dataset

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "Counterfactual",
    "task": "counterfactual",
    "dataset": "shapes",
    "model": "toy",
    "arms": [{"name": "baseline", "views": []}, {"name": "ig", "views": ["heatmap", "tokens"]}],
    "items": {"n": 6, "per_participant": 3, "raters_per_item": 2},
    "counterfactual": {"edits": ["modality_baseline", "word_swap"], "k": 2, "swaps": ["square -> circle"]},
}


@pytest.fixture
def owned(alice, tmp_path):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 16))
    make_model(alice)
    return alice


def test_the_spec_takes_the_task_with_its_edits(owned):
    study = study_create_from_spec(owner=owned, spec=study_spec_parse(data=SPEC, owner=owned))
    assert (study.task, study.explanation_display, study.n_candidates) == ("counterfactual", "predicted_unlabelled", 0)
    assert study.design["counterfactual"] == {
        "edits": ["modality_baseline", "word_swap"],
        "k": 2,
        "swaps": [["square", "circle"]],
    }
    plain = study_spec_parse(data={**SPEC, "name": "plain", "counterfactual": None}, owner=owned)
    assert plain.counterfactual == {"edits": ["modality_baseline", "top_k_removed"], "k": 3, "swaps": []}


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"phases": {"learning_items": 2}}, "phases.learning_items", "no practice items"),
        ({"candidates": {"mode": "top_k", "k": 2}}, "candidates.mode", "offers every valid answer"),
        ({"explanations": {"display": "all_candidates"}}, "explanations.display", "shows predicted_unlabelled"),
        ({"counterfactual": {"edits": ["blur"]}}, "counterfactual.edits", "unknown edit 'blur'"),
        ({"counterfactual": {"edits": ["word_swap"]}}, "counterfactual.swaps", "at least one 'old -> new'"),
        ({"counterfactual": {"swaps": ["red -> blue"]}}, "counterfactual.swaps", "only used with the word_swap"),
        ({"counterfactual": {"k": 0}}, "counterfactual.k", "from 1 to 64"),
        ({"counterfactual": {"edits": ["word_swap"], "swaps": ["two words -> x"]}}, "counterfactual.swaps", "pair 1"),
        ({"task": "forward", "counterfactual": {"k": 2}}, "counterfactual", "only applies to task counterfactual"),
    ],
)
def test_what_counterfactual_cannot_run_is_refused_naming_the_field(owned, overrides, field, message):
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data={**SPEC, **overrides}, owner=owned)
    assert caught.value.field == field and message in str(caught.value)


def test_the_spec_template_loads_through_the_parser(alice, tmp_path):
    template = Path(__file__).resolve().parents[2] / "docs" / "specs" / "counterfactual.yaml"
    dataset_import(owner=alice, name="mine", jsonl_path=write_dataset(tmp_path / "src", 48))
    make_model(alice, name="mymodel")
    assert study_spec_load(path=template)["task"] == "counterfactual"
    text = template.read_text().replace("YOUR-DATASET", "mine").replace("YOUR-MODEL", "mymodel")
    spec = study_spec_parse(data=yaml.safe_load(text), owner=alice)
    assert spec.task == "counterfactual" and spec.pretest and spec.counterfactual["edits"]


@pytest.mark.urls("tests.api.urls")
def test_the_api_creates_a_counterfactual_study_and_refuses_bad_values_with_400(owned):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owned).key}")
    created = client.post("/api/studies/", SPEC, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["task"] == "counterfactual"
    bad = client.post("/api/studies/", {**SPEC, "name": "bad", "counterfactual": {"k": "three"}}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "counterfactual.k", bad.content


def test_the_form_takes_the_edits_and_shows_their_errors_under_the_field(owned):
    client = Client()
    client.force_login(owned)
    form = {
        "name": "Designed counterfactual",
        "task": "counterfactual",
        "dataset": Dataset.objects.get(owner=owned).pk,
        "model": RegisteredModel.objects.get(owner=owned).pk,
        "seed": 1,
        "n_items": 6,
        "items_per_participant": 3,
        "raters_per_item": 2,
        "candidate_mode": "all",
        "explanation_method": "integrated_gradients",
        "interaction_method": "second_order",
        "explanation_display": "predicted_unlabelled",
        "lease_minutes": 30,
        "learning_items": 0,
        "attention_checks": 0,
        "min_rt_ms": 0,
        "arm_0_name": "baseline",
        "arm_1_name": "ig",
        "arm_1_views": ["heatmap"],
        "counterfactual_edits": ["word_swap"],
        "counterfactual_k": 2,
        "counterfactual_swaps": "square circle",
    }
    refused = client.post("/studies/new/", form)
    assert refused.status_code == 200 and not Study.objects.filter(name="Designed counterfactual").exists()
    assert "must read &#x27;old -&gt; new&#x27;" in refused.content.decode()
    form["counterfactual_swaps"] = "square -> circle\nred -> blue"
    assert client.post("/studies/new/", form).status_code == 302
    study = Study.objects.get(name="Designed counterfactual")
    assert study.design["counterfactual"]["swaps"] == [["square", "circle"], ["red", "blue"]]
    edit_page = client.get(f"/studies/{study.pk}/edit/").content.decode()
    assert "square -&gt; circle" in edit_page and 'value="counterfactual" selected' in edit_page


@pytest.fixture
def counterfactual_study(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=20,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        n_candidates=0,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="counterfactual",
        explanation_display="predicted_unlabelled",
        pretest=True,
        launch=False,
        name="cf",
    )
    make_counterfactual_edits(study)
    return study_launch(study=study)


def test_participants_walk_a_counterfactual_study_and_are_scored_on_the_edit(
    counterfactual_study, alice, dashboard_computed_at_once
):
    study = counterfactual_study
    seen_arms, walked = set(), 0
    for _ in range(2):  # arms are dealt in permuted blocks: two entries cover both
        client = Client()
        client.get(f"/s/{study.public_id}/")
        client.post(f"/s/{study.public_id}/consent/")
        instructions = client.get(f"/s/{study.public_id}/instructions/").content.decode()
        assert "the same input <b>changed</b>" in instructions
        client.post(f"/s/{study.public_id}/instructions/")
        participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
        seen_arms.add(participant.condition.name)
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            edit = CounterfactualEdit.objects.get(study=study, item=assignment.item, shown=True)
            original = Prediction.objects.get(model=study.model, item=assignment.item).label
            assert f'<b id="original-answer">{original}</b>' in page
            assert f"What changed: {edit.description}." in page and 'id="edited-image"' in page
            assert ('id="shared-evidence"' in page) == (
                bool(participant.condition.views) and assignment.phase == "test"
            )
            assert edit.model_label in assignment.candidate_order
            # right on every other answer
            guess = (
                edit.model_label
                if walked % 2 == 0
                else next(c for c in assignment.candidate_order if c != edit.model_label)
            )
            client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": guess, "confidence": 4})
            response = Response.objects.get(assignment=assignment)
            assert (response.counterfactual_edit_id, response.edit_prediction) == (edit.pk, edit.model_label)
            assert response.model_prediction == original
            walked += 1
        participant.refresh_from_db()
        assert participant.phase == "done"
    assert seen_arms == {"baseline", "ig"}

    rows = list(csv.DictReader(io.StringIO(_csv(study))))
    assert len(rows) == walked == 12
    for row in rows:
        assert row["task"] == "counterfactual" and row["correct_simulation"] == ""
        assert row["edit_kind"] in ("modality_baseline", "top_k_removed") and row["edit_description"]
        assert row["correct_counterfactual"] == str(row["guess"] == row["edit_prediction"])

    report = study_report_compute(study=study, n_resamples=100)
    frame = load_responses_csv(io.StringIO(_csv(study)))
    for section, data in (("all", frame.drop(columns=["excluded"])), ("after_exclusions", frame)):
        again = counterfactual_simulation(data, baseline="baseline", seed=study.seed, n_resamples=100)
        assert jsonable(again) == report["counterfactual"][section]
    assert report["counterfactual"]["all"]["all"]["n_pretest_responses"] == 6

    researcher = Client()
    researcher.force_login(alice)
    dashboard = researcher.get(f"/studies/{study.pk}/dashboard/?section=all").content.decode()
    assert 'id="counterfactual-table"' in dashboard and 'id="accuracy-table"' not in dashboard
    summary = b"".join(researcher.get(f"/studies/{study.pk}/exports/summary.csv").streaming_content).decode()
    kinds = {row["edit_kind"] for row in rows if row["condition"] == "baseline" and row["phase"] == "test"}
    assert all(f"counterfactual.all.by_edit_kind.{kind}.arms.baseline.accuracy.estimate," in summary for kind in kinds)
    assert "counterfactual.after_exclusions.all.effects.ig.pre_post_change.ci_low" in summary
    printed = io.StringIO()
    call_command("analyze", str(study.pk), "--n-resamples", "50", stdout=printed)
    assert "counterfactual accuracy" in printed.getvalue() and "pre->post" in printed.getvalue()


def _csv(study) -> str:
    from annotations.selectors.exports import study_responses_csv_lines

    return "".join(study_responses_csv_lines(study=study))
