"""The rationale task (annotations/study_tasks.py) through Django's test client: participants see
the gold answer and mark the evidence for it; the marks are checked on the server (a bad mark is a
400 naming what is wrong, and nothing is stored); the stored rationales export, aggregate, and
import back as the dataset's evidence."""

from __future__ import annotations

import pytest
from django.test import Client

from annotations.models import Participant, Prediction, Response
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def rationale_study(alice, tmp_path):
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=3,
        conditions=[ConditionSpec("baseline"), ConditionSpec("ig", ["heatmap", "tokens"])],
        task="rationale",
        name="mark",
    )


def _enter(study) -> tuple[Client, Participant]:
    client = Client()
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    instructions = client.get(f"/s/{study.public_id}/instructions/").content.decode()
    assert "Mark every part of the input that shows the answer is right" in instructions
    client.post(f"/s/{study.public_id}/instructions/")
    return client, Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


BAD_MARKS = [
    ([], "mark at least one part"),
    (["image:Z9"], "no cell of the grid"),
    (["text:99"], "is no position on"),
    (["text:x"], "is no position on"),
    (["image:C4", "image:C4"], "marked twice"),
    (["audio:1"], "no part of this item that can be marked"),
]


def test_a_participant_marks_evidence_and_bad_marks_are_refused(rationale_study):
    study = rationale_study
    client, participant = _enter(study)
    answered = 0
    while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
        page = client.get(f"/s/{study.public_id}/item/").content.decode()
        gold = assignment.item.gold_label
        assert f'Mark the evidence for: <b id="evidence-for">{gold}</b>' in page
        assert page.count('name="mark" value="image:') == 64 and 'value="image:H8"' in page
        words = assignment.item.payload["text"].replace("?", " ?").split()
        assert [f'value="text:{k}"' in page for k in range(len(words))] == [True] * len(words) == [True] * 6
        assert 'name="guess"' not in page and 'name="verdict"' not in page
        prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
        if prediction != gold:
            assert prediction not in page
        url = f"/s/{study.public_id}/item/{assignment.public_id}/"
        for marks, message in BAD_MARKS:
            refused = client.post(url, {"mark": marks, "confidence": 3})
            assert refused.status_code == 400 and message in refused.content.decode(), marks
        assert not Response.objects.filter(assignment=assignment).exists()
        marks = ["text:3", "image:D4", "image:C4"]
        assert client.post(url, {"mark": marks, "confidence": 4}).status_code == 302
        response = Response.objects.get(assignment=assignment)
        assert response.rationale == {"image": ["C4", "D4"], "text": [3]}
        assert (response.guess, response.verdict, response.confidence) == ("", None, 4)
        # the same answer again is idempotent (in any order); a different one is refused (409)
        assert client.post(url, {"mark": marks[::-1], "confidence": 4}).status_code == 302
        assert client.post(url, {"mark": ["image:C4"], "confidence": 4}).status_code == 409
        answered += 1
    assert answered == 2
