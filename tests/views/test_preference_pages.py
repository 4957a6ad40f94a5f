"""Rating and preference tasks (annotations/study_tasks.py, services/judging.py) through Django's
test client: the spec refuses what they cannot run naming the field; the preference slots follow
the balanced seeded schedule; participants walk both studies, bad answers get a 400 and nothing
stored, and their answers are stored with the arms compared, left and right."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from annotations.analysis.preference import preference_report, ratings_report
from annotations.analysis.report import jsonable
from annotations.analysis.responses import load_responses_csv
from annotations.models import Participant, Prediction, Response, Slot
from annotations.selectors.exports import (
    PARTICIPANT_COLUMNS,
    study_participant_records,
    study_responses_csv_lines,
    study_responses_csv_lines_python,
)
from annotations.services.analysis import study_report_compute
from annotations.services.datasets import dataset_import
from annotations.services.participants import assignment_current, assignment_serve, response_submit
from annotations.services.preference_design import preference_schedule
from annotations.services.spec import SpecError, study_spec_load, study_spec_parse
from annotations.services.studies import ConditionSpec
from tests.builders.dashboard import dashboard_computed_at_once  # noqa: F401  (fixture)
from tests.builders.studies import build_study, enter_and_start, make_model, write_dataset

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "Prefer",
    "task": "preference",
    "dataset": "shapes",
    "model": "toy",
    "arms": [
        {"name": "baseline", "views": []},
        {"name": "ig_heat", "views": ["heatmap"]},
        {"name": "ig_words", "views": ["tokens"]},
    ],
    "items": {"n": 6, "per_participant": 3, "raters_per_item": 2},
}


FOUR_ARMS = [
    ConditionSpec("baseline"),
    ConditionSpec("ig_heat", ["heatmap"]),
    ConditionSpec("ig_words", ["tokens"]),
    ConditionSpec("ig_both", ["heatmap", "tokens"]),
]


@pytest.fixture
def owned(alice, tmp_path):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 16))
    make_model(alice)
    return alice


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"arms": SPEC["arms"][:2]}, "arms", "at least 2 arms with views"),
        ({"phases": {"learning_items": 2}}, "phases.learning_items", "no practice items"),
        ({"phases": {"pretest": True}}, "phases.pretest", "no warm-up phase"),
        ({"explanations": {"display": "all_candidates"}}, "explanations.display", "shows predicted_unlabelled"),
        (
            {"arms": [*SPEC["arms"][:2], {"name": "x", "views": ["heatmap"], "method": "magic"}]},
            "arms[2].method",
            "unknown value 'magic'",
        ),
        (
            {
                "task": "verification",
                "arms": [*SPEC["arms"][:2], {"name": "x", "views": ["heatmap"], "method": "lime"}],
            },
            "arms[2].method",
            "only rating and preference studies compare methods",
        ),
        (
            {"arms": [{"name": "b", "views": [], "method": "lime"}, *SPEC["arms"][1:]]},
            "arms[0].method",
            "no explanation",
        ),
    ],
)
def test_what_preference_cannot_run_is_refused_naming_the_field(owned, overrides, field, message):
    with pytest.raises(SpecError) as caught:
        study_spec_parse(data={**SPEC, **overrides}, owner=owned)
    assert caught.value.field == field and message in str(caught.value)


@pytest.mark.parametrize("task", ["rating", "preference"])
def test_the_spec_templates_load_through_the_parser(alice, tmp_path, task):
    template = Path(__file__).resolve().parents[2] / "docs" / "specs" / f"{task}.yaml"
    dataset_import(owner=alice, name="mine", jsonl_path=write_dataset(tmp_path / "src", 48))
    make_model(alice, name="mymodel")
    text = template.read_text().replace("YOUR-DATASET", "mine").replace("YOUR-MODEL", "mymodel")
    spec = study_spec_parse(data=yaml.safe_load(text), owner=alice)
    assert study_spec_load(path=template)["task"] == spec.task == task


def _walk(client, study):
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _page_leaks(page: str, study, assignment) -> list[str]:
    """Arm names and the model's answer, where the page shows them (it must not)."""
    prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
    names = [c.name for c in study.conditions.all()]
    return [word for word in [*names, f">{prediction}<", f'"{prediction}"'] if word in page]


def test_a_preference_study_compares_balanced_pairs_and_stores_each_side(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=16,
        n_items=6,
        items_per_participant=3,
        raters_per_item=3,
        conditions=FOUR_ARMS,
        task="preference",
        explanation_display="predicted_unlabelled",
        name="prefer",
    )
    slots = list(Slot.objects.filter(condition__study=study))
    arms = sorted(c.pk for c in study.conditions.filter(is_baseline=False))
    # 6 items x 3 raters = 18 slots over 3 unordered pairs: 6 each, 3 per side.
    pairs = Counter(frozenset((s.condition_id, s.right_condition_id)) for s in slots)
    assert len(slots) == 18 and set(pairs.values()) == {6} and len(pairs) == 3
    assert set(Counter((s.condition_id, s.right_condition_id) for s in slots).values()) == {3}
    # each item compares its three pairs once (raters_per_item a multiple of the pairs)
    for item_id in {s.item_id for s in slots}:
        assert len({frozenset((s.condition_id, s.right_condition_id)) for s in slots if s.item_id == item_id}) == 3
    # reproducible from the seed: the stored slots are the schedule's
    schedule = preference_schedule(arms, sorted({s.item_id for s in slots}), raters_per_item=3, seed=study.seed)
    assert {(s.item_id, s.index): (s.condition_id, s.right_condition_id) for s in slots} == schedule
    assert not study.conditions.get(is_baseline=True).slots.exists()

    client = Client()
    participant = _walk(client, study)
    answered = 0
    while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
        page = client.get(f"/s/{study.public_id}/item/").content.decode()
        assert 'id="explanation-a"' in page and 'id="explanation-b"' in page and 'name="preferred"' in page
        assert 'name="guess"' not in page and _page_leaks(page, study, assignment) == []
        assert assignment.left_condition_id != assignment.right_condition_id
        assert not assignment.left_condition.is_baseline and not assignment.right_condition.is_baseline
        url = f"/s/{study.public_id}/item/{assignment.public_id}/"
        for bad in ({"preferred": "middle", "confidence": 3}, {"confidence": 3}, {"preferred": "left"}):
            refused = client.post(url, bad)
            assert refused.status_code == 400, bad
        assert not Response.objects.filter(assignment=assignment).exists()
        side = "left" if answered % 2 == 0 else "right"
        assert client.post(url, {"preferred": side, "confidence": 4}).status_code == 302
        response = Response.objects.get(assignment=assignment)
        assert (response.preferred, response.guess, response.confidence) == (side, "", 4)
        assert (response.left_condition_id, response.right_condition_id) == (
            assignment.left_condition_id,
            assignment.right_condition_id,
        )
        assert client.post(url, {"preferred": side, "confidence": 4}).status_code == 302  # idempotent
        other = {"left": "right", "right": "left"}[side]
        assert client.post(url, {"preferred": other, "confidence": 4}).status_code == 409
        answered += 1
    assert answered == 3

    # A researcher's preview takes no slot: its pairs are drawn from the schedule's pairs by the seed.
    researcher = Client()
    researcher.force_login(alice)
    researcher.post(f"/studies/{study.pk}/preview/")
    researcher.post(f"/s/{study.public_id}/consent/")
    researcher.post(f"/s/{study.public_id}/instructions/")
    assert 'id="explanation-b"' in researcher.get(f"/s/{study.public_id}/item/").content.decode()
    preview = Participant.objects.get(study=study, platform="preview")
    assert {(a.left_condition_id, a.right_condition_id) for a in preview.assignments.all()} <= set(schedule.values())
    assert Slot.objects.filter(condition__study=study, assignment__participant=preview).count() == 0


def test_a_rating_study_stores_three_scales_and_refuses_a_missing_one(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig_heat", ["heatmap"])],
        task="rating",
        explanation_display="predicted_unlabelled",
        name="rate",
    )
    client = Client()
    participant = _walk(client, study)
    assert participant.condition.name == "ig_heat"  # the baseline has nothing to rate: no slots
    while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
        page = client.get(f"/s/{study.public_id}/item/").content.decode()
        assert 'id="explanation"' in page and all(f'name="{s}"' in page for s in ("helpfulness", "trust"))
        assert _page_leaks(page, study, assignment) == []
        url = f"/s/{study.public_id}/item/{assignment.public_id}/"
        refused = client.post(url, {"helpfulness": 4, "trust": 9, "understanding": 2, "confidence": 3})
        assert refused.status_code == 400 and "rate trust from 1 to 5" in refused.content.decode()
        assert client.post(url, {"helpfulness": 4, "trust": 2, "understanding": 5, "confidence": 3}).status_code == 302
        response = Response.objects.get(assignment=assignment)
        assert (response.rating_helpfulness, response.rating_trust, response.rating_understanding) == (4, 2, 5)
        assert response.preferred == "" and response.left_condition_id is None


def _fill(study, n_participants: int, judge) -> int:
    """Participants answer every item through the services; ``judge(assignment)`` gives the form."""
    answered = 0
    for k in range(n_participants):
        participant = enter_and_start(study, f"filler-{k}")
        while (assignment := assignment_current(participant=participant)) is not None:
            assignment_serve(assignment=assignment)
            response_submit(
                participant=participant,
                assignment_public_id=assignment.public_id,
                guess="",
                confidence=3,
                judgement=judge(assignment),
            )
            answered += 1
    return answered


def test_a_filled_preference_study_exports_each_side_and_ranks_the_arms(alice, tmp_path, dashboard_computed_at_once):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=16,
        n_items=6,
        items_per_participant=3,
        raters_per_item=3,
        conditions=FOUR_ARMS,
        task="preference",
        explanation_display="predicted_unlabelled",
        name="ranked",
    )
    # The stronger arm of each pair wins 5 of its 6 comparisons (the first goes the other way, so that
    # every arm wins and loses and the maximum-likelihood scores exist).
    strength = {"ig_both": 2, "ig_heat": 1, "ig_words": 0}
    seen = Counter()

    def judge(assignment):
        left, right = assignment.left_condition.name, assignment.right_condition.name
        better = "left" if strength[left] > strength[right] else "right"
        seen[frozenset((left, right))] += 1
        if seen[frozenset((left, right))] == 1:
            better = {"left": "right", "right": "left"}[better]
        return {"preferred": better}

    assert _fill(study, 6, judge) == 18
    lines = list(study_responses_csv_lines(study=study))
    assert lines == list(study_responses_csv_lines_python(study=study))  # COPY and Python agree
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    assert len(rows) == 18
    for row in rows:
        assert row["task"] == "preference" and row["guess"] == "" and row["correct_simulation"] == ""
        assert row["preferred_method"] == row[f"method_{row['preferred']}"]
        assert row["method_left"] != row["method_right"] and row["rating_trust"] == ""

    # nothing is right or wrong in a preference: no test accuracy for the participants
    participants = [dict(zip(PARTICIPANT_COLUMNS, r)) for r in study_participant_records(study=study)]
    assert len(participants) == 6 and {p["test_accuracy"] for p in participants} == {None}

    # Reproducible: the analysis from the CSV equals the service's.
    report = study_report_compute(study=study, n_resamples=50)
    frame = load_responses_csv(io.StringIO("".join(lines)))
    again = preference_report(frame.drop(columns=["excluded"]), seed=study.seed, n_boot=50)
    assert jsonable(again) == report["judging"]["all"]
    fit = report["judging"]["all"]["bradley_terry"]
    assert fit["estimable"]
    scores = {name: row["score"] for name, row in fit["methods"].items()}
    assert scores["ig_both"] > scores["ig_heat"] > scores["ig_words"]

    researcher = Client()
    researcher.force_login(alice)
    assert "compares two arms with views" in researcher.get(f"/studies/{study.pk}/").content.decode()
    dashboard = researcher.get(f"/studies/{study.pk}/dashboard/?section=all").content.decode()
    assert 'id="bt-table"' in dashboard and 'id="triads-share"' in dashboard and 'id="accuracy-table"' not in dashboard
    assert dashboard.index("<b>ig_both</b>") < dashboard.index("<b>ig_heat</b>") < dashboard.index("<b>ig_words</b>")
    printed = io.StringIO()
    call_command("analyze", str(study.pk), "--n-resamples", "20", stdout=printed)
    assert "ig_both: Bradley-Terry +" in printed.getvalue()


def test_a_filled_rating_study_exports_the_scales_and_shows_their_distributions(
    alice, tmp_path, dashboard_computed_at_once
):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        conditions=[
            ConditionSpec("baseline"),
            ConditionSpec("ig_heat", ["heatmap"]),
            ConditionSpec("ig_both", ["heatmap", "tokens"]),
        ],
        task="rating",
        explanation_display="predicted_unlabelled",
        name="rated",
    )
    score = {"ig_heat": 2, "ig_both": 4}

    def judge(assignment):
        value = score[assignment.condition.name]
        return {"helpfulness": value, "trust": value + 1, "understanding": 3}

    assert _fill(study, 8, judge) == 16
    lines = list(study_responses_csv_lines(study=study))
    assert lines == list(study_responses_csv_lines_python(study=study))
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    assert {(r["condition"], r["rating_helpfulness"], r["rating_trust"]) for r in rows} == {
        ("ig_heat", "2", "3"),
        ("ig_both", "4", "5"),
    }
    report = study_report_compute(study=study, n_resamples=50)
    frame = load_responses_csv(io.StringIO("".join(lines)))
    again = ratings_report(frame.drop(columns=["excluded"]), reference="ig_heat", seed=study.seed, n_boot=50)
    assert jsonable(again) == report["judging"]["all"]
    both = report["judging"]["all"]["scales"]["helpfulness"]["ig_both"]
    assert (both["mean"], both["difference"], both["superiority"], both["distribution"]) == (
        4.0,
        2.0,
        1.0,
        [0, 0, 0, 8, 0],
    )

    researcher = Client()
    researcher.force_login(alice)
    dashboard = researcher.get(f"/studies/{study.pk}/dashboard/?section=all").content.decode()
    assert 'id="ratings-table"' in dashboard and 'class="likert-seg p4" style="width: 100.0%"' in dashboard


@pytest.mark.urls("tests.api.urls")
def test_the_api_and_the_form_take_the_tasks_and_refuse_bad_designs(owned):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from annotations.models import Dataset, RegisteredModel, Study

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owned).key}")
    arms = [*SPEC["arms"], {"name": "sal", "views": ["heatmap"], "method": "saliency"}]
    created = api.post("/api/studies/", {**SPEC, "arms": arms}, format="json")
    assert created.status_code == 201 and Study.objects.get(pk=created.json()["id"]).task == "preference"
    assert {c["name"]: c["method"] for c in created.json()["conditions"]}["sal"] == "saliency"
    bad = api.post("/api/studies/", {**SPEC, "name": "one arm", "arms": SPEC["arms"][:2]}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "arms"

    client = Client()
    client.force_login(owned)
    form = {
        "name": "Designed rating",
        "task": "rating",
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
        "learning_items": 0,
        "attention_checks": 1,
        "min_rt_ms": 0,
        "arm_0_name": "baseline",
        "arm_1_name": "ig",
        "arm_1_views": ["heatmap"],
    }
    form["learning_items"] = 1
    refused = client.post("/studies/new/", form)
    assert refused.status_code == 200 and "has no practice items" in refused.content.decode()
    form["learning_items"] = 0
    assert client.post("/studies/new/", form).status_code == 302
    designed = Study.objects.get(name="Designed rating")
    assert designed.task == "rating" and designed.attention_checks == 1  # instructed checks only


def test_arms_with_their_own_methods_are_precomputed_and_shown_side_by_side(alice, tmp_path):
    from annotations.models import Explanation
    from annotations.selectors.precompute import study_required_methods

    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=3,
        items_per_participant=3,
        raters_per_item=2,
        conditions=[
            ConditionSpec("baseline"),
            ConditionSpec("m_ig", ["heatmap"]),
            ConditionSpec("m_sal", ["heatmap", "tokens"], method="saliency"),
        ],
        task="preference",
        explanation_display="predicted_unlabelled",
        name="methods",
    )
    assert study_required_methods(study=study) == {
        "integrated_gradients": {"heatmap"},
        "saliency": {"heatmap", "tokens"},
    }
    # every stored row states its colour scale, as precompute's do
    Explanation.objects.filter(model=study.model).update(summary={"colour_scales": {"image": {"low": -1, "high": 1}}})
    client = Client()
    participant = _walk(client, study)
    assignment = participant.assignments.filter(status="active").order_by("position").first()
    page = client.get(f"/s/{study.public_id}/item/").content.decode()
    # each side shows its own arm's stored explanation (the builder's PNGs differ per method)
    rows = {
        e.method: e
        for e in Explanation.objects.filter(model=study.model, item=assignment.item, target_label__isnull=False)
        if e.target_label == Prediction.objects.get(model=study.model, item=assignment.item).label
    }
    assert set(rows) == {"integrated_gradients", "saliency"}
    left_method = assignment.left_condition.method or study.explanation_method
    a_block = page[page.index('id="explanation-a"') : page.index('id="explanation-b"')]
    b_block = page[page.index('id="explanation-b"') :]
    assert ('class="tokens"' in a_block) == (left_method == "saliency")
    assert ('class="tokens"' in b_block) == (left_method != "saliency")
    assert 'id="scale-heatmap"' not in page  # two methods, two scales: no single printed scale
    assert _page_leaks(page, study, assignment) == []


@pytest.mark.parametrize("task", ["rating", "preference"])
def test_judging_studies_ask_instructed_attention_checks_and_score_them(alice, tmp_path, task):
    """No rating or side is right by itself, so every check is instructed: the page says which
    rating (on every scale) or which side to choose; only that answer passes; a participant who
    fails the pre-registered number is screened out; the checks stay out of the analysis."""
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=16,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        conditions=FOUR_ARMS[:3],
        task=task,
        explanation_display="predicted_unlabelled",
        attention_checks=2,
        exclusion_rules={"screen_out_at_attention_failures": 2},
        name=f"checked {task}",
    )

    def answer(assignment, *, obey: bool) -> dict:
        expected = assignment.expected_answer or ("left" if task == "preference" else "3")  # a real item: any
        if task == "preference":
            other = "right" if expected == "left" else "left"
            return {"preferred": expected if obey else other, "confidence": 2}
        ratings = [int(expected)] * 3 if obey else [int(expected), 1 + int(expected) % 5, int(expected)]
        return {"helpfulness": ratings[0], "trust": ratings[1], "understanding": ratings[2], "confidence": 2}

    for obey in (True, False):
        client = Client()
        participant = _walk(client, study)
        checks = participant.assignments.filter(kind="attention")
        assert checks.count() == 2 and set(checks.values_list("check_type", flat=True)) == {"instructed"}
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            assert _page_leaks(page, study, assignment) == []
            is_check = assignment.kind == "attention"
            assert ('class="instructed"' in page) == is_check
            if is_check and task == "rating":
                assert f"please choose <b>{assignment.expected_answer}</b> on each of the three questions" in page
            if is_check and task == "preference":
                side = "A" if assignment.expected_answer == "left" else "B"
                assert f"please choose <b>Explanation {side}</b>" in page
            url = f"/s/{study.public_id}/item/{assignment.public_id}/"
            assert client.post(url, answer(assignment, obey=obey or not is_check)).status_code == 302
        participant.refresh_from_db()
        passed = list(
            Response.objects.filter(participant=participant, is_attention_check=True).values_list(
                "attention_passed", flat=True
            )
        )
        assert passed == [obey, obey]
        assert participant.screened_out is (not obey)

    # The checks' items (a pool of their own) are not among the items analysed.
    report = study_report_compute(study=study)["judging"]["all"]
    scored = Response.objects.filter(participant__study=study, is_attention_check=False)
    assert report["n_items"] == scored.values("item").distinct().count()
    if task == "preference":
        assert report["n_choices"] == scored.count()
