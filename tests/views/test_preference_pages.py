"""Rating and preference tasks (annotations/study_tasks.py, services/judging.py) through Django's
test client: the spec refuses what they cannot run naming the field; the preference slots follow
the balanced seeded schedule; participants walk both studies, bad answers get a 400 and nothing
stored, and their answers are stored with the arms compared, left and right."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from annotations.models import Participant, Prediction, Response, Slot
from annotations.services.datasets import dataset_import
from annotations.services.preference_design import preference_schedule
from annotations.services.spec import SpecError, study_spec_load, study_spec_parse
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study, make_model, write_dataset

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
        ({"quality": {"attention_checks": 1}}, "quality.attention_checks", "not available"),
        ({"explanations": {"display": "all_candidates"}}, "explanations.display", "shows predicted_unlabelled"),
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
    from django.test import Client

    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=16,
        n_items=6,
        items_per_participant=3,
        raters_per_item=3,
        conditions=[
            ConditionSpec("baseline"),
            ConditionSpec("ig_heat", ["heatmap"]),
            ConditionSpec("ig_words", ["tokens"]),
            ConditionSpec("ig_both", ["heatmap", "tokens"]),
        ],
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


def test_a_rating_study_stores_three_scales_and_refuses_a_missing_one(alice, tmp_path):
    from django.test import Client

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
