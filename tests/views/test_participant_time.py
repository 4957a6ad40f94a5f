"""Time and pay: the time left on every page after the instructions, and the partial-completion
path of a participant whose time ran out after some answers (told so, paid through the study's
partial-completion code or MTurk's outcome=partial, never the full code; recorded on the
participant and in the export)."""

from __future__ import annotations

import copy
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotations.forms import StudyForm
from annotations.models import Assignment, Participant
from annotations.selectors.exports import PARTICIPANT_COLUMNS, study_participant_records
from annotations.services.participants import assignments_allocate, leases_reclaim
from annotations.services.spec import SpecError, study_spec_parse
from annotations.services.studies import study_create_from_spec
from tests.builders.studies import build_study
from tests.services.test_spec import FULL

pytestmark = pytest.mark.django_db(transaction=True)

TIME_LEFT = re.compile(r'<time id="time-left-value" datetime="PT(\d+)S">(\d+) min</time>')
PROLIFIC = "?PROLIFIC_PID=half&STUDY_ID=s&SESSION_ID=x"
MTURK = "?workerId=W7&assignmentId=A7&hitId=H7&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"


def _enter(client: Client, study, query: str = "") -> Participant:
    assert client.get(f"/s/{study.public_id}/{query}").status_code == 200
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _current(participant) -> Assignment:
    return participant.assignments.filter(status="active").order_by("position").first()


def _answer_current(client: Client, study, participant) -> None:
    assignment = _current(participant)
    assert client.get(f"/s/{study.public_id}/item/").status_code == 200
    if assignment.phase == "learning":
        client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
    else:
        guess = assignment.expected_answer or assignment.candidate_order[0]
        client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": guess, "confidence": 3})


@pytest.mark.parametrize(
    "platform, query, reclaimed",
    [("link", "", False), ("prolific", PROLIFIC, True), ("mturk", MTURK, False)],
)
def test_time_run_out_after_an_answer_takes_the_partial_path(alice, tmp_path, platform, query, reclaimed):
    study = build_study(
        alice, tmp_path, n_items=4, items_per_participant=3, raters_per_item=1, survey=True, name=f"part-{platform}"
    )
    client = Client()
    participant = _enter(client, study, query)
    _answer_current(client, study, participant)
    Assignment.objects.filter(participant=participant).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    if reclaimed:  # beat got there first, or not: the same outcome
        assert leases_reclaim() == 2

    # No survey: straight to a page that says the time ran out after one answer.
    assert client.get(f"/s/{study.public_id}/item/").url == f"/s/{study.public_id}/done/"
    assert client.get(f"/s/{study.public_id}/survey/").url == f"/s/{study.public_id}/done/"
    page = client.get(f"/s/{study.public_id}/done/")
    html = page.content.decode()
    assert page.status_code == 200 and 'id="partial"' in html
    assert "ran out after you answered 1 question." in html
    assert study.partial_code in html and study.completion_code not in html and study.screened_out_code not in html
    if platform == "prolific":
        link = f'href="https://app.prolific.com/submissions/complete?cc={study.partial_code}" id="platform-continue"'
        assert link in html
    elif platform == "mturk":
        assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in html
        assert '<input type="hidden" name="assignmentId" value="A7">' in html
        assert f'<input type="hidden" name="completion_code" value="{study.partial_code}">' in html
        assert '<input type="hidden" name="outcome" value="partial">' in html
    else:
        assert f'<p class="code" id="completion-code">{study.partial_code}</p>' in html

    participant.refresh_from_db()
    assert (participant.phase, participant.partial, participant.timed_out) == ("done", True, False)
    assert participant.responses.count() == 1
    row = dict(zip(PARTICIPANT_COLUMNS, next(iter(study_participant_records(study=study)))))
    assert (row["partial"], row["timed_out"], row["n_test"]) == (True, False, 1)
    if platform != "link":  # coming back says so, and shows no code
        again = Client().get(f"/s/{study.public_id}/{query}").content.decode()
        assert "your answers were recorded" in again and study.completion_code not in again
        assert study.partial_code not in again


def test_a_participant_who_answers_everything_in_time_is_not_partial(alice, tmp_path):
    """Full completion, including after a top-up of leases that ran out early: the full code."""
    study = build_study(alice, tmp_path, n_items=6, items_per_participant=2, raters_per_item=1, name="full")
    client = Client()
    participant = _enter(client, study, PROLIFIC)
    Assignment.objects.filter(participant=participant).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases_reclaim()
    assert len(assignments_allocate(participant=participant)) == 2
    while _current(participant) is not None:
        _answer_current(client, study, participant)
    done = client.get(f"/s/{study.public_id}/done/")
    assert done.url == f"https://app.prolific.com/submissions/complete?cc={study.completion_code}"
    participant.refresh_from_db()
    assert (participant.phase, participant.partial) == ("done", False)


def test_every_page_after_the_instructions_shows_the_time_left(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=2,
        raters_per_item=2,
        learning_items=1,
        pretest=True,
        survey=True,
        lease_minutes=45,
        name="clock",
    )
    client = Client()
    for path in ("", "instructions/"):
        if path == "instructions/":
            client.post(f"/s/{study.public_id}/consent/")
        before = client.get(f"/s/{study.public_id}/{path}").content.decode()
        assert 'id="time-left"' not in before
        assert "You have 45 minutes in all" in before or path == ""
    client.post(f"/s/{study.public_id}/instructions/")
    participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
    phases = []
    while (assignment := _current(participant)) is not None:
        before = timezone.now()
        html = client.get(f"/s/{study.public_id}/item/").content.decode()
        after = timezone.now()
        (seconds, minutes), *more = TIME_LEFT.findall(html)
        assert not more
        # The lease's deadline, as seen between the request's start and end (no clock margin).
        deadline = Assignment.objects.get(pk=assignment.pk).lease_expires_at
        assert int((deadline - after).total_seconds()) <= int(seconds) <= (deadline - before).total_seconds()
        assert int(seconds) <= 45 * 60 and int(minutes) == -(-int(seconds) // 60)  # rounded up, shown without script
        phases.append(assignment.phase)
        _answer_current(client, study, participant)
    assert set(phases) == {"pretest", "learning", "test"}
    survey = client.get(f"/s/{study.public_id}/survey/").content.decode()
    assert 'id="survey-form"' in survey and len(TIME_LEFT.findall(survey)) == 1
    # Past the limit, the page says so (the survey takes no lease of its own).
    Assignment.objects.filter(participant=participant).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    late = client.get(f"/s/{study.public_id}/survey/").content.decode()
    assert '<time id="time-left-value" datetime="PT0S">none, time is up</time>' in late


def test_the_partial_code_is_a_study_setting_of_the_spec_and_the_form(alice, tmp_path):
    from annotations.services.datasets import dataset_import
    from tests.builders.studies import make_model, write_dataset

    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 16))
    make_model(alice)
    data = copy.deepcopy(FULL)
    data["codes"]["partial"] = "HALF789"
    study = study_create_from_spec(owner=alice, spec=study_spec_parse(data=data, owner=alice))
    assert (study.completion_code, study.screened_out_code, study.partial_code) == ("DONE123", "OUT456", "HALF789")
    data["codes"]["partial"] = "DONE123"
    with pytest.raises(SpecError, match=r"codes\.partial: must differ from codes\.completed"):
        study_spec_parse(data=data, owner=alice)
    assert StudyForm.initial_for(study)["partial_code"] == "HALF789"
    assert "partial_code" in [f.name for _, fields in StudyForm(user=alice).sections() for f in fields]
