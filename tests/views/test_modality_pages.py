"""Participant pages speak of the inputs the study has, by the names the researcher gave them:
the plants demo (a table and a note) never mentions a picture, the shapes demo (a picture and a
question) does; the MTurk preview counts the questions a worker answers and the practice apart.
Real demo studies, precomputed in-process, walked with the Django test client."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.test import Client

from annotations.management.commands.demo import TABULAR_INSTRUCTIONS, TABULAR_MODALITY_NAMES
from annotations.models import Assignment, Participant
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import PLANT_ADAPTER, PLANT_ARMS, live_demo_study

pytestmark = pytest.mark.django_db

DESIGN = dict(
    n_items=4,
    items_per_participant=2,
    raters_per_item=2,
    n_candidates=3,
    learning_items=1,
    attention_checks=1,
    survey=True,
)
SHAPES_ARMS = [
    ConditionSpec(name="baseline"),
    ConditionSpec(name="ig", views=["heatmap", "tokens"]),
    ConditionSpec(name="share", views=["share"]),
]
HIDDEN = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
READ_ALOUD = re.compile(r'\b(?:alt|aria-label|title)="([^"]*)"')


def _words(html: str) -> str:
    """What a participant reads or a screen reader says: the text, alt texts and labels."""
    html = HIDDEN.sub(" ", html)
    spoken = " ".join(READ_ALOUD.findall(html))
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html) + " " + spoken).split())
    return re.sub(r"\s([.,;:)])", r"\1", re.sub(r"([(])\s", r"\1", text))  # a tag is no word break before punctuation


def _pages_by_arm(study) -> dict[str, dict[str, str]]:
    """Per arm: the consent, instructions and first test item page's words (one participant each)."""
    pages: dict[str, dict[str, str]] = {}
    for k in range(12):
        if len(pages) == study.conditions.count():
            break
        client = Client()
        consent = client.get(f"/s/{study.public_id}/?PROLIFIC_PID=p{k}&STUDY_ID=s&SESSION_ID=x").content.decode()
        client.post(f"/s/{study.public_id}/consent/")
        participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
        instructions = client.get(f"/s/{study.public_id}/instructions/").content.decode()
        client.post(f"/s/{study.public_id}/instructions/")
        seen = {"consent": _words(consent), "instructions": _words(instructions)}
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            if assignment.phase == Assignment.Phase.LEARNING:
                seen["learning"] = _words(page)
                client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
                continue
            seen["item"], seen["item_html"] = _words(page), page
            break
        pages.setdefault(participant.condition.name, seen)
    assert len(pages) == study.conditions.count(), sorted(pages)
    return pages


def _preview(study) -> str:
    page = Client().get(f"/s/{study.public_id}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1").content.decode()
    return _words(re.search(r'<p id="task-counts">(.*?)</p>', page, re.S).group(1))


def test_the_plants_study_names_its_table_and_note_and_never_a_picture(alice, plants_jsonl):
    study = live_demo_study(
        owner=alice,
        jsonl=plants_jsonl,
        adapter_path=PLANT_ADAPTER,
        conditions=PLANT_ARMS,
        modality_names=TABULAR_MODALITY_NAMES,
        **DESIGN,
    )
    pages = _pages_by_arm(study)
    preview = _preview(study)

    everything = " ".join(
        [preview, *(text for seen in pages.values() for key, text in seen.items() if key != "item_html")]
    )
    assert not re.search(r"pictures?\b", everything, re.I)
    assert "cat" not in everything.split() and "dog" not in everything.split()
    for seen in pages.values():
        assert "examples of what an AI model was given (the measurements and the owner's note)" in seen["consent"]
    bars = pages["bars"]["instructions"]
    assert "Say the model was given the measurements and the owner's note, and the choices are A and B." in bars
    assert "For the measurements, each row has a bar" in bars
    share = pages["share"]
    assert "Bars show how much the measurements and the owner's note, each, pushed the model" in share["instructions"]
    # The share bars are laid out in the page under the inputs' names, one pair per candidate.
    rows = re.findall(r'<span class="fbar-name" role="cell">([^<]*)</span>', share["item_html"])
    assert [unescape(r) for r in rows] == ["the measurements", "the owner's note"] * 3
    assert share["item"].count("The measurements vs. the owner's note") == 3
    assert "/v/share/" not in share["item_html"]
    assert preview == (
        "You will answer 3 questions. Each shows the measurements and the owner's note that an AI model was given: "
        "you predict what the model answered (it is sometimes wrong), and say how confident you are. Before the "
        "main questions you study 1 practice example, shown with the model's answer. At the end, one question about "
        "your experience."
    )
    assert TABULAR_INSTRUCTIONS not in pages["bars"]["instructions"]  # the demo command's own; here the default


def test_the_shapes_study_speaks_of_the_picture_and_the_question(alice, demo_jsonl):
    study = live_demo_study(owner=alice, jsonl=demo_jsonl, conditions=SHAPES_ARMS, **DESIGN)
    pages = _pages_by_arm(study)

    for seen in pages.values():
        assert "you will see pictures, each with a question, and you will guess" in seen["consent"]
        assert "An AI model looked at each picture and answered the question below it." in seen["instructions"]
    assert "Which animal is in the picture? Say the choices are A: cat and B: dog." in pages["ig"]["instructions"]
    share = pages["share"]
    assert "Bars show how much the picture and the question, each, pushed the model" in share["instructions"]
    assert share["item"].count("The picture vs. the question") == 3
    rows = re.findall(r'<span class="fbar-name" role="cell">([^<]*)</span>', share["item_html"])
    assert rows == ["the picture", "the question"] * 3
    assert _preview(study).startswith("You will answer 3 questions. Each shows the picture and the question")
