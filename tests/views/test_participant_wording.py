"""What participant pages say: the public title (never the internal study name, which may
state the hypothesis), the number of questions as shown, keys that exist, the colour scales
and token text as written."""

from __future__ import annotations

import re
from datetime import timedelta
from html import escape

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from annotations.models import PUBLIC_TITLE_DEFAULT, Assignment, Explanation, Participant, Study
from annotations.services.participants import leases_reclaim
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study
from workers.engine import render

pytestmark = pytest.mark.django_db

INTERNAL = "Hypothesis heatmaps beat baseline"
TITLE = "Guess what a computer answered"
ARMS = [
    ConditionSpec("baseline"),
    ConditionSpec("everything", ["heatmap", "tokens", "share", "interaction", "top_pairs"]),
]
BRAND = re.compile(r'<span class="brand">(.*?)</span>')
PAGE_TITLE = re.compile(r"<title>(.*?)</title>")


@pytest.fixture
def study(alice, tmp_path):
    """Pre-test, 2 learning items, 2 attention checks, survey; 3 test items per participant."""
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=30,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        conditions=ARMS,
        learning_items=2,
        attention_checks=2,
        pretest=True,
        survey=True,
        name=INTERNAL,
    )
    Study.objects.filter(pk=study.pk).update(public_title=TITLE)
    study.refresh_from_db()
    return study


def _titled(html: str, where: str, title: str = TITLE) -> None:
    assert INTERNAL not in html, where
    assert BRAND.search(html).group(1) == escape(title), where
    assert PAGE_TITLE.search(html).group(1).endswith(escape(title)), where


def _explanation_participant(client: Client, study) -> Participant:
    """Enter until the participant is in the explanation arm (arms alternate)."""
    for k in range(4):
        client.cookies.clear()
        client.get(f"/s/{study.public_id}/?PROLIFIC_PID=w{k}&STUDY_ID=s&SESSION_ID=x")
        client.post(f"/s/{study.public_id}/consent/")
        participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
        if participant.condition.views:
            return participant
    raise AssertionError("no participant landed in the explanation arm")


def test_every_participant_page_shows_the_public_title_and_never_the_internal_name(study):
    client = Client()
    preview = client.get(f"/s/{study.public_id}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1")
    _titled(preview.content.decode(), "MTurk preview")
    _titled(client.get(f"/s/{study.public_id}/").content.decode(), "consent")
    client.post(f"/s/{study.public_id}/consent/")
    _titled(client.get(f"/s/{study.public_id}/instructions/").content.decode(), "instructions")
    client.post(f"/s/{study.public_id}/instructions/")
    participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
    phases = set()
    while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
        phases.add(assignment.phase)
        _titled(client.get(f"/s/{study.public_id}/item/").content.decode(), assignment.phase)
        if assignment.phase == Assignment.Phase.LEARNING:
            client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
        else:
            client.post(
                f"/s/{study.public_id}/item/{assignment.public_id}/",
                {"guess": assignment.expected_answer or assignment.candidate_order[0], "confidence": 3},
            )
    assert phases == {"pretest", "learning", "test"}
    _titled(client.get(f"/s/{study.public_id}/survey/").content.decode(), "survey")
    client.post(f"/s/{study.public_id}/survey/", {"helpfulness": 3})
    _titled(client.get(f"/s/{study.public_id}/done/").content.decode(), "done")
    # A refusal (the same link again, finished) and a refusal with no study at all.
    _titled(client.get(f"/s/{study.public_id}/item/", follow=True).content.decode(), "finished")
    _titled(Client().get("/i/no-such-invitation/").content.decode(), "bad invitation", PUBLIC_TITLE_DEFAULT)

    late = Client()
    late.get(f"/s/{study.public_id}/?PROLIFIC_PID=late&STUDY_ID=s&SESSION_ID=x")
    late.post(f"/s/{study.public_id}/consent/")
    late.post(f"/s/{study.public_id}/instructions/")
    late.get(f"/s/{study.public_id}/item/")
    Assignment.objects.filter(participant__platform_id="late").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    leases_reclaim()
    timed_out = late.get(f"/s/{study.public_id}/done/").content.decode()
    assert 'id="timed-out"' in timed_out
    _titled(timed_out, "timed out")


def test_a_study_without_a_public_title_shows_the_default_one(study):
    Study.objects.filter(pk=study.pk).update(public_title="")
    _titled(Client().get(f"/s/{study.public_id}/").content.decode(), "consent", PUBLIC_TITLE_DEFAULT)


def test_the_promised_number_of_questions_is_the_number_shown(study):
    """Attention checks look like any other question, so the promise counts them; the keys
    named are the ones that exist."""
    client = Client()
    mturk = client.get(f"/s/{study.public_id}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1").content.decode()
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    instructions = client.get(f"/s/{study.public_id}/instructions/").content.decode()
    client.post(f"/s/{study.public_id}/instructions/")
    participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
    held = {phase: participant.assignments.filter(phase=phase).count() for phase in ("pretest", "learning", "test")}
    assert held == {"pretest": 3, "learning": 2, "test": 3 + 2}
    assert f"<b>Main part.</b> {held['test']} questions:" in instructions
    assert f"<b>Warm-up.</b> {held['pretest']} questions without" in instructions
    assert f"<b>Practice.</b> {held['learning']} examples where" in instructions
    # The preview counts what the worker does: questions answered (warm-up + main), practice apart.
    counts = " ".join(re.search(r'<p id="task-counts">(.*?)</p>', mturk, re.S).group(1).split())
    answered = held["pretest"] + held["test"]
    assert counts.startswith(
        f"You will answer <b>{answered} questions</b> ({held['pretest']} warm-up questions, then {held['test']} main ones)."
    )
    assert f"you study {held['learning']} practice examples, shown with the model's answer" in counts
    assert "the picture and the question" in counts
    # four answers per question: keys A to D, digits for the confidence
    assert (
        "<kbd>A</kbd>–<kbd>D</kbd> pick an answer, <kbd>1</kbd>–<kbd>5</kbd> set how confident you are" in instructions
    )
    item = client.get(f"/s/{study.public_id}/item/").content.decode()
    assert "<kbd>A</kbd>–<kbd>D</kbd> pick an answer" in item
    assert [re.sub(r"\s", "", k) for k in re.findall(r'name="guess"[^>]*>\s*<kbd>(\w)</kbd>', item)] == list("ABCD")
    assert "<kbd>9</kbd>" not in item


def test_scales_are_stated_once_in_text_and_tokens_read_as_written(study):
    """The colour scales stored beside the views are written on the page (legible text, not
    pixels shrunk by the browser), once per item; the patch grid is drawn over the picture;
    punctuation is written against its word."""
    scales = {
        "image": {"scale": 0.022, "low": "\u22120.022", "high": "+0.022"},
        "text": {"scale": 1.5, "low": "\u22121.5", "high": "+1.5"},
    }
    grid = {
        "modality": "image",
        "width": 16.0,
        "height": 16.0,
        "columns": [{"label": "A", "start": 0.0, "end": 8.0}, {"label": "B", "start": 8.0, "end": 16.0}],
        "rows": [{"label": "1", "start": 0.0, "end": 8.0}, {"label": "2", "start": 8.0, "end": 16.0}],
    }
    tokens = [
        {"text": t, "background": "#f7f7f7", "foreground": "#000000", "title": "0"}
        for t in ("what", "colour", "(", "roughly", ")", "is", "it", "?")
    ]
    for row in Explanation.objects.filter(model=study.model):
        if row.method == study.interaction_method:
            row.summary = {"colour_scale": {"scale": 2.3, "low": "\u22122.3", "high": "+2.3"}, "patch_grid": grid}
        else:
            row.summary, row.token_view = {"colour_scales": scales}, tokens
        row.save()
    client = Client()
    participant = _explanation_participant(client, study)
    client.post(f"/s/{study.public_id}/instructions/")
    for _ in range(10):  # through the warm-up and the practice
        assignment = participant.assignments.filter(status="active").order_by("position").first()
        if assignment.phase == Assignment.Phase.TEST:
            break
        client.get(f"/s/{study.public_id}/item/")
        if assignment.phase == Assignment.Phase.LEARNING:
            client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
        else:
            client.post(
                f"/s/{study.public_id}/item/{assignment.public_id}/",
                {"guess": assignment.expected_answer or assignment.candidate_order[0], "confidence": 3},
            )
    html = client.get(f"/s/{study.public_id}/item/").content.decode()
    for view, name, low, high in (
        ("heatmap", "Picture", "\u22120.022", "+0.022"),
        ("tokens", "Words", "\u22121.5", "+1.5"),
        ("interaction", "Patch × word", "\u22122.3", "+2.3"),
    ):
        block = re.search(rf'<span class="scale" id="scale-{view}">(.*?)</span></span></span>', html).group(1)
        assert re.sub(r"<[^>]+>", " ", block).split() == name.split() + [low, "0", high]
    assert html.count('class="scale-bar"') == 3
    columns = re.search(r'<span class="grid-columns"[^>]*>(.*?</span>)</span>', html).group(1)
    rows = re.search(r'<span class="grid-rows"[^>]*>(.*?</span>)</span>', html).group(1)
    assert (re.sub(r"<[^>]+>", "", columns), re.sub(r"<[^>]+>", "", rows)) == ("AB", "12")
    words = re.search(r'<span class="tokens"[^>]*>(.*?)</span></span></span>', html).group(0)
    # Each word's score is printed under it (reachable by touch and keyboard, not a tooltip).
    scores = re.findall(r'<span class="tok-score">([^<]*)</span>', words)
    assert len(scores) == len(re.findall(r'class="tok[ "]', words)) == 8
    assert all(re.fullmatch(r"[+\u2212-]?[0-9.]+", x) for x in scores)
    read = re.sub(r"<[^>]+>", "", re.sub(r'<span class="tok-score">[^<]*</span>', "", words))
    assert read.strip() == "what colour (roughly) is it?"


def test_the_scale_bar_is_drawn_with_the_renderers_colour_map():
    """The page's colour bar (CSS) and the views (PNG) must mean the same colours."""
    css = (settings.BASE_DIR / "static" / "mmeval" / "mmeval.css").read_text()
    gradient = re.search(r"\.scale-bar \{[^}]*linear-gradient\(to right, ([^)]*)\)", css).group(1)
    stops = [(colour, float(at.rstrip("%"))) for colour, at in (stop.split() for stop in gradient.split(", "))]
    expected = render.scores_to_rgb(np.linspace(-1, 1, len(stops)), scale=1.0, cmap=render.DEFAULT_CMAP)
    assert [colour for colour, _ in stops] == ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in expected]
    assert [at for _, at in stops] == [100 * k / (len(stops) - 1) for k in range(len(stops))]
