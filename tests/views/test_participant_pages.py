"""Participant pages through Django's test client: the phases, crowd entry and exit,
and forged, replayed and CSRF-less requests, each refused without changing anything."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.utils import timezone

from annotations.models import Assignment, Participant, Prediction, Response, Slot
from annotations.selectors.exports import PARTICIPANT_COLUMNS, study_participant_records
from annotations.services.participants import leases_reclaim
from annotations.services.studies import ConditionSpec, study_close
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db

ALL_VIEWS = [
    ConditionSpec("baseline"),
    ConditionSpec("everything", ["heatmap", "tokens", "share", "interaction", "top_pairs"]),
]
SRC = re.compile(r'src="((?:/s/|data:)[^"]+)"')  # the media (not the static timing script)


@pytest.fixture
def study(alice, tmp_path):
    """Pre-test, 2 learning items, 1 attention check, survey; 3 test items per participant."""
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        conditions=ALL_VIEWS,
        learning_items=2,
        attention_checks=1,
        pretest=True,
        survey=True,
        name="pages",
    )


def _enter(client: Client, study, query: str = "") -> Participant:
    assert client.get(f"/s/{study.public_id}/{query}").status_code == 200
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _current(participant) -> Assignment:
    return participant.assignments.filter(status="active").order_by("position").first()


def _snapshot(study) -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        sorted(Response.objects.filter(participant__study=study).values_list("pk", "guess", "confidence")),
        sorted(Assignment.objects.filter(participant__study=study).values_list("pk", "status")),
        sorted(Participant.objects.filter(study=study).values_list("pk", "phase", "screened_out", "helpfulness")),
        sorted(Slot.objects.filter(condition__study=study).values_list("pk", "assignment_id")),
    )


def _answer_one_then_run_out_of_time(client: Client, study, query: str) -> Participant:
    """Enter, answer the first item, then let the time limit pass."""
    participant = _enter(client, study, query)
    assignment = _current(participant)
    client.get(f"/s/{study.public_id}/item/")
    client.post(
        f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": assignment.candidate_order[0], "confidence": 3}
    )
    Assignment.objects.filter(participant=participant).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return participant


def _walk(client: Client, study, participant, *, guess_index: int = 0, pages: list | None = None) -> None:
    """Answer every item through the pages, as a participant following instructions would."""
    while True:
        page = client.get(f"/s/{study.public_id}/item/")
        if page.status_code == 302:
            return
        assert page.status_code == 200
        html = page.content.decode()
        if pages is not None:
            pages.append(html)
        assignment = _current(participant)
        if assignment.phase == "learning":
            assert client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/").status_code == 302
            continue
        guess = assignment.expected_answer or assignment.candidate_order[guess_index]
        response = client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": guess, "confidence": 4})
        assert response.status_code == 302, response.content.decode()


# --- phases ---------------------------------------------------------------------------------


def test_learning_reveals_the_answer_and_the_test_does_not(study):
    entered = []
    for k in range(2):  # balanced arms: one of the two is in the explanation arm
        client = Client()
        entered.append((client, _enter(client, study, f"?PROLIFIC_PID=p{k}&STUDY_ID=s&SESSION_ID=x{k}")))
    client, participant = next((c, p) for c, p in entered if p.condition.views)
    phases = []
    while (assignment := _current(participant)) is not None:
        phases.append(assignment.phase)
        html = client.get(f"/s/{study.public_id}/item/").content.decode()
        prediction = Prediction.objects.get(model=study.model, item=assignment.item).label
        if assignment.phase == "learning":
            assert re.search(rf'id="model-answer">{re.escape(prediction)}<', html)
            assert 'class="view view-heatmap heatmap"' in html and "view-top_pairs" in html
            client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
        else:
            assert "model-answer" not in html and "The model answered" not in html
            assert ('<img class="view ' in html) == (assignment.phase == "test")  # the pre-test shows no explanation
            for url in SRC.findall(html):  # the pictures are inside the page
                assert url.startswith("data:image/png;base64,"), url
            client.post(
                f"/s/{study.public_id}/item/{assignment.public_id}/",
                {"guess": assignment.expected_answer or assignment.candidate_order[0], "confidence": 3},
            )
    assert phases == ["pretest"] * 3 + ["learning"] * 2 + ["test"] * 4
    survey = client.get(f"/s/{study.public_id}/survey/")
    assert b'name="helpfulness"' in survey.content
    response = client.post(f"/s/{study.public_id}/survey/", {"helpfulness": "5", "comment": "nice"})
    assert response.status_code == 302 and response.url.endswith("/done/")
    done = client.get(response.url)
    assert done.status_code == 302
    assert done.url == f"https://app.prolific.com/submissions/complete?cc={study.completion_code}"
    participant.refresh_from_db()
    assert (participant.phase, participant.helpfulness, participant.comment) == ("done", 5, "nice")


def test_view_media_are_scoped_to_the_assignment_and_phase(study, alice, tmp_path):
    """A media URL is a capability: the assignment's random UUID, as the participant's own
    page embeds it. It serves only what that page showed, only while the item is open, and
    only under its own study's URL."""
    owner = Client()
    me = _enter(owner, study)
    assignment = _current(me)
    assert assignment.phase == "pretest"
    base = f"/s/{study.public_id}/a/{assignment.public_id}"
    assert owner.get(f"{base}/input/image").status_code == 404  # not served yet: nothing is fixed
    owner.get(f"/s/{study.public_id}/item/")
    assert owner.get(f"{base}/input/image").status_code == 200
    assert Client().get(f"{base}/input/image").status_code == 200  # no session needed: the UUID is the key
    assert owner.get(f"{base}/v/heatmap/0").status_code == 404  # no explanation in the pre-test
    assert owner.get(f"{base}/input/text").status_code == 404
    other_study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="elsewhere")
    assert owner.get(f"/s/{other_study.public_id}/a/{assignment.public_id}/input/image").status_code == 404
    assert owner.get(f"/s/{study.public_id}/a/00000000-0000-4000-8000-000000000000/input/image").status_code == 404
    # Answered: the item's media are gone.
    owner.post(
        f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": assignment.candidate_order[0], "confidence": 2}
    )
    assert owner.get(f"{base}/input/image").status_code == 404
    # Walk to the test phase of the explanation arm and check the media there.
    intruder = Client()
    other = _enter(intruder, study)
    for client, participant in ((owner, me), (intruder, other)):
        if participant.condition.views:
            while _current(participant).phase != "test":
                a = _current(participant)
                client.get(f"/s/{study.public_id}/item/")
                if a.phase == "learning":
                    client.post(f"/s/{study.public_id}/learn/{a.public_id}/")
                else:
                    client.post(
                        f"/s/{study.public_id}/item/{a.public_id}/", {"guess": a.candidate_order[0], "confidence": 2}
                    )
            a = _current(participant)
            html = client.get(f"/s/{study.public_id}/item/").content.decode()
            # The page carries its pictures (tests/views/test_participant_inline_media.py); the
            # URLs still answer, for the same bytes, for anything else that asks.
            sources = SRC.findall(html)
            assert len(sources) == 1 + 4 * len(a.candidate_order)  # the input, then 4 image views each
            assert all(src.startswith("data:image/png;base64,") for src in sources)
            base = f"/s/{study.public_id}/a/{a.public_id}"
            urls = [f"{base}/input/image"] + [
                f"{base}/v/{view}/{index}"
                for index in range(len(a.candidate_order))
                for view in ("heatmap", "interaction", "top_pairs", "share")
            ]
            for url in urls:
                response = client.get(url)
                body = b"".join(response.streaming_content)
                assert response.status_code == 200 and body.startswith(b"\x89PNG")
                assert "data:image/png;base64," + base64.b64encode(body).decode() in sources
                assert "Content-Disposition" not in response
                assert response["Cache-Control"] == "private, max-age=86400, immutable"
            assert client.get(f"{base}/v/heatmap/{len(a.candidate_order)}").status_code == 404
            assert client.get(f"{base}/v/tokens/0").status_code == 404
            assert client.get(f"{base}/v/sparkles/0").status_code == 404


def test_media_can_be_handed_to_the_proxy(study, settings):
    """With an internal prefix set, the view names the file for nginx (which strips the
    header) instead of streaming it; with X-Sendfile, the absolute path."""
    client = Client()
    participant = _enter(client, study)
    client.get(f"/s/{study.public_id}/item/")
    assignment = _current(participant)
    url = f"/s/{study.public_id}/a/{assignment.public_id}/input/image"
    settings.MMEVAL_MEDIA_X_ACCEL_PREFIX = "/_protected-media/"
    accel = client.get(url)
    assert accel.status_code == 200 and accel.content == b"" and accel["Content-Type"] == "image/png"
    assert accel["X-Accel-Redirect"] == "/_protected-media/" + assignment.item.payload["image"]
    settings.MMEVAL_MEDIA_X_ACCEL_PREFIX = ""
    settings.MMEVAL_MEDIA_X_SENDFILE = True
    sendfile = client.get(url)
    assert sendfile["X-Sendfile"] == str(settings.MEDIA_ROOT / assignment.item.payload["image"])
    assert "X-Accel-Redirect" not in sendfile


def test_participant_pages_may_be_framed_by_mturk_only(study):
    response = Client().get(f"/s/{study.public_id}/")
    assert "X-Frame-Options" not in response
    assert response["Content-Security-Policy"] == (
        "frame-ancestors 'self' https://worker.mturk.com https://www.mturk.com https://workersandbox.mturk.com"
    )
    assert "no-store" in response["Cache-Control"]


# --- crowd entry and exit -------------------------------------------------------------------


def test_mturk_preview_describes_the_task_and_creates_nothing(study):
    client = Client()
    page = client.get(
        f"/s/{study.public_id}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1"
        f"&turkSubmitTo=https://workersandbox.mturk.com"
    )
    assert page.status_code == 200 and b'id="mturk-preview"' in page.content and b'id="consent"' not in page.content
    assert not Participant.objects.exists()
    assert not any(key.startswith(("participant:", "entry:")) for key in client.session.keys())


def test_mturk_worker_ends_with_a_form_posting_to_mturk(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="turk")
    client = Client()
    participant = _enter(
        client, study, "?workerId=W1&assignmentId=A77&hitId=H1&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    )
    assert (participant.platform, participant.platform_id) == ("mturk", "W1")
    _walk(client, study, participant)
    done = client.get(f"/s/{study.public_id}/done/")
    html = done.content.decode()
    assert done.status_code == 200
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in html
    assert 'name="assignmentId" value="A77"' in html
    assert f'value="{study.completion_code}"' in html


def test_forged_turk_submit_to_cannot_send_the_form_elsewhere(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="turk-evil")
    client = Client()
    participant = _enter(client, study, "?workerId=W2&assignmentId=A1&hitId=H1&turkSubmitTo=https://evil.example")
    _walk(client, study, participant)
    html = client.get(f"/s/{study.public_id}/done/").content.decode()
    assert "evil.example" not in html and 'action="https://www.mturk.com/mturk/externalSubmit"' in html


def test_screened_out_prolific_participant_gets_the_screened_out_code(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=6,
        items_per_participant=3,
        raters_per_item=1,
        attention_checks=1,
        exclusion_rules={"screen_out_at_attention_failures": 1},
        survey=True,
        name="screen",
    )
    client = Client()
    participant = _enter(client, study, "?PROLIFIC_PID=bad&STUDY_ID=s&SESSION_ID=x")
    while (assignment := _current(participant)).kind != "attention":
        client.get(f"/s/{study.public_id}/item/")
        client.post(
            f"/s/{study.public_id}/item/{assignment.public_id}/",
            {"guess": assignment.candidate_order[0], "confidence": 3},
        )
    page = client.get(f"/s/{study.public_id}/item/").content.decode()
    assert f"please choose <b>{assignment.expected_answer}</b>" in page
    wrong = next(c for c in assignment.candidate_order if c != assignment.expected_answer)
    response = client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": wrong, "confidence": 3})
    assert response.url.endswith("/done/")
    done = client.get(response.url)
    assert done.url == f"https://app.prolific.com/submissions/complete?cc={study.screened_out_code}"
    assert parse_qs(urlparse(done.url).query)["cc"] != [study.completion_code]


def test_returning_prolific_participant_resumes_in_a_new_browser_and_finished_is_refused(study):
    query = "?PROLIFIC_PID=back&STUDY_ID=s&SESSION_ID=1"
    first = Client()
    participant = _enter(first, study, query)
    assignment = _current(participant)
    first.get(f"/s/{study.public_id}/item/")
    first.post(
        f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": assignment.candidate_order[0], "confidence": 3}
    )
    second = Client()  # another device: no session
    response = second.get(f"/s/{study.public_id}/{query}")
    assert response.status_code == 302 and response.url.endswith("/item/")
    assert second.get(response.url).status_code == 200
    assert _current(participant).pk != assignment.pk
    _walk(second, study, participant)
    second.post(
        f"/s/{study.public_id}/survey/",
        {"helpfulness": "3", "comment": ""} if participant.condition.views else {"comment": ""},
    )
    participant.refresh_from_db()
    assert participant.phase == "done"
    third = Client()
    refused = third.get(f"/s/{study.public_id}/{query}")
    assert refused.status_code == 200 and b"Already completed" in refused.content
    assert Participant.objects.filter(study=study).count() == 1


def test_knowing_a_platform_id_does_not_resume_someone_elses_session(study):
    """MTurk worker IDs are semi-public: resuming needs the same platform session too."""
    owner = Client()
    participant = _enter(owner, study, "?PROLIFIC_PID=victim&STUDY_ID=s&SESSION_ID=real-session")
    attacker = Client()
    page = attacker.get(f"/s/{study.public_id}/?PROLIFIC_PID=victim&STUDY_ID=s&SESSION_ID=guessed")
    assert page.status_code == 200 and b'data-code="elsewhere"' in page.content
    assert f"participant:{study.public_id}" not in attacker.session
    assert attacker.get(f"/s/{study.public_id}/item/").status_code == 302  # back to the entry page
    attacker.post(f"/s/{study.public_id}/consent/")  # at most a new, separate participant
    assert attacker.session.get(f"participant:{study.public_id}") != str(participant.public_id)
    assert owner.get(f"/s/{study.public_id}/item/").status_code == 200
    assert _current(participant).served_at is not None


def test_double_click_on_consent_creates_one_participant(study):
    client = Client()
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    # The second click's request left before the first one stored the participant in the session.
    session = client.session
    del session[f"participant:{study.public_id}"]
    session.save()
    client.post(f"/s/{study.public_id}/consent/")
    assert Participant.objects.filter(study=study).count() == 1


def test_full_and_closed_studies_say_so(alice, tmp_path):
    tiny = build_study(
        alice, tmp_path, n_dataset_items=4, n_items=2, items_per_participant=2, raters_per_item=1, name="tiny"
    )
    _enter(Client(), tiny)
    _enter(Client(), tiny)
    client = Client()
    client.get(f"/s/{tiny.public_id}/")
    full = client.post(f"/s/{tiny.public_id}/consent/")
    assert b"This study is full" in full.content and b"Return submission" in full.content
    study_close(study=tiny)
    closed = Client().get(f"/s/{tiny.public_id}/")
    assert b"This study is closed" in closed.content


# --- forged and replayed requests -----------------------------------------------------------


def test_submitting_for_another_participants_assignment_is_refused(study):
    victim, forger = Client(), Client()
    mine = _enter(victim, study)
    _enter(forger, study)
    assignment = _current(mine)
    victim.get(f"/s/{study.public_id}/item/")
    before = _snapshot(study)

    response = forger.post(
        f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": assignment.candidate_order[0], "confidence": 5}
    )
    learn = forger.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")

    assert response.status_code == 400 and b"not assigned to you" in response.content
    assert learn.status_code == 400
    assert _snapshot(study) == before


def test_replayed_submission_changes_nothing(study):
    client = Client()
    participant = _enter(client, study)
    first = _current(participant)
    client.get(f"/s/{study.public_id}/item/")
    url = f"/s/{study.public_id}/item/{first.public_id}/"
    assert client.post(url, {"guess": first.candidate_order[0], "confidence": 2}).status_code == 302
    second = _current(participant)
    client.get(f"/s/{study.public_id}/item/")
    before = _snapshot(study)

    same = client.post(url, {"guess": first.candidate_order[0], "confidence": 2})  # the very same request again
    altered = client.post(url, {"guess": first.candidate_order[1], "confidence": 5})  # a tampered replay

    assert same.status_code == 302 and same.url.endswith("/item/")  # back to the current item
    assert altered.status_code == 409 and b"already answered" in altered.content
    assert _snapshot(study) == before
    assert _current(participant).pk == second.pk


def test_guess_outside_the_candidates_is_refused(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, n_candidates=2, name="outside")
    client = Client()
    participant = _enter(client, study)
    assignment = _current(participant)
    client.get(f"/s/{study.public_id}/item/")
    before = _snapshot(study)
    not_shown = next(label for label in study.model.labels if label not in assignment.candidate_order)
    for data in (
        {"guess": not_shown, "confidence": 3},
        {"guess": "", "confidence": 3},
        {"guess": assignment.candidate_order[0], "confidence": 9},
        {"confidence": 3},
    ):
        response = client.post(f"/s/{study.public_id}/item/{assignment.public_id}/", data)
        assert response.status_code == 400
    assert _snapshot(study) == before


def test_posts_without_a_csrf_token_are_refused(study):
    client = Client(enforce_csrf_checks=True)
    entry = client.get(f"/s/{study.public_id}/?PROLIFIC_PID=c1&STUDY_ID=s&SESSION_ID=x")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', entry.content.decode()).group(1)
    assert client.post(f"/s/{study.public_id}/consent/").status_code == 403
    assert not Participant.objects.exists()
    assert client.post(f"/s/{study.public_id}/consent/", {"csrfmiddlewaretoken": token}).status_code == 302
    participant = Participant.objects.get()
    assert client.post(f"/s/{study.public_id}/instructions/").status_code == 403
    assert not participant.assignments.exists()
    page = client.get(f"/s/{study.public_id}/instructions/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client.post(f"/s/{study.public_id}/instructions/", {"csrfmiddlewaretoken": token})
    assignment = _current(participant)
    client.get(f"/s/{study.public_id}/item/")
    before = _snapshot(study)

    response = client.post(
        f"/s/{study.public_id}/item/{assignment.public_id}/", {"guess": assignment.candidate_order[0], "confidence": 3}
    )

    assert response.status_code == 403 and b"form has expired" in response.content
    assert _snapshot(study) == before


@pytest.mark.django_db(transaction=True)
def test_time_limit_ends_the_study_with_what_was_answered(alice, tmp_path):
    # transaction=True: the page runs in autocommit, as in production, not inside a test transaction.
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=3, raters_per_item=1, name="late")
    client = Client()
    participant = _answer_one_then_run_out_of_time(client, study, "?PROLIFIC_PID=slow&STUDY_ID=s&SESSION_ID=x")

    response = client.get(f"/s/{study.public_id}/item/")

    assert response.status_code == 302 and response.url.endswith("/done/")
    participant.refresh_from_db()
    assert participant.phase == "done" and participant.responses.count() == 1
    assert not Slot.objects.filter(assignment__participant=participant, assignment__status="active").exists()
    assert Slot.objects.filter(condition=participant.condition, assignment=None).count() == 4 - 1  # freed at once
    # A returning participant who ran out of time before any answer is told so, with no code.
    other = Client()
    late = _enter(other, study, "?PROLIFIC_PID=later&STUDY_ID=s&SESSION_ID=y")
    Assignment.objects.filter(participant=late).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    page = other.get(f"/s/{study.public_id}/item/", follow=True)
    assert page.status_code == 200 and b"Time is up" in page.content
    assert study.completion_code.encode() not in page.content


# --- time run out before any answer ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "platform, query",
    [
        ("link", ""),
        ("prolific", "?PROLIFIC_PID=slowpoke&STUDY_ID=s&SESSION_ID=x"),
        ("mturk", "?workerId=W9&assignmentId=A9&hitId=H9&turkSubmitTo=https%3A%2F%2Fwww.mturk.com"),
    ],
)
def test_time_run_out_before_any_answer_gets_no_completion_code(alice, tmp_path, platform, query):
    """Beat reclaims the leases of someone who answered nothing in time: they are told the
    time ran out and asked to return the task; no survey, no code, no redirect, no form."""
    study = build_study(
        alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=1, survey=True, name=f"late-{platform}"
    )
    client = Client()
    participant = _enter(client, study, query)
    assert participant.platform == platform
    client.get(f"/s/{study.public_id}/item/")  # saw the first item, never answered
    Assignment.objects.filter(participant=participant).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases_reclaim() == 2

    for path in ("item/", "survey/", "done/"):
        page = client.get(f"/s/{study.public_id}/{path}", follow=True)
        html = page.content.decode()
        assert page.status_code == 200 and 'id="timed-out"' in html, path
        assert page.redirect_chain[-1:] in ([], [(f"/s/{study.public_id}/done/", 302)])  # never off-site
        assert study.completion_code not in html and study.screened_out_code not in html
        assert "externalSubmit" not in html and 'name="helpfulness"' not in html
    assert ("Return submission" in html) == (platform == "prolific")
    assert ("return the HIT" in html) == (platform == "mturk")
    participant.refresh_from_db()
    assert (participant.phase, participant.timed_out, participant.responses.count()) == ("done", True, 0)
    assert not Slot.objects.filter(assignment__participant=participant).exists()  # back in the pool
    # Coming back through the platform link says so again, and creates no one.
    if platform != "link":
        again = Client().get(f"/s/{study.public_id}/{query}")
        assert b"Time is up" in again.content and study.completion_code.encode() not in again.content
    assert Participant.objects.filter(study=study).count() == 1
    # The participants export records it.
    row = dict(zip(PARTICIPANT_COLUMNS, next(iter(study_participant_records(study=study)))))
    assert (row["phase"], row["timed_out"], row["n_test"]) == ("done", True, 0)


@pytest.mark.django_db(transaction=True)
def test_time_run_out_after_an_answer_is_partial_not_complete(alice, tmp_path):
    """Someone who answered something did work: told so, the partial-completion code, never
    the full one (tests/views/test_participant_time.py covers each platform)."""
    study = build_study(
        alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=1, survey=True, name="half"
    )
    client = Client()
    participant = _answer_one_then_run_out_of_time(client, study, "?PROLIFIC_PID=half&STUDY_ID=s&SESSION_ID=x")
    leases_reclaim()
    assert client.get(f"/s/{study.public_id}/item/").url.endswith("/done/")
    html = client.get(f"/s/{study.public_id}/done/").content.decode()
    assert study.partial_code in html and study.completion_code not in html
    participant.refresh_from_db()
    assert participant.partial and not participant.timed_out
