"""Reads of the participant path (``annotations.selectors.participants``): the session's
participant, invitations, how a participant leaves, and the media map of an item page."""

from __future__ import annotations

import uuid

import pytest

from annotations.models import Assignment, InviteToken, Study
from annotations.selectors.participants import (
    MEDIA_STUDY_KEY,
    assignment_media_file,
    invite_token_study,
    participant_exit,
    study_and_participant,
)
from annotations.services.participants import participant_enter
from tests.builders.studies import build_study, enter_and_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(alice, tmp_path):
    return build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="reads")


def test_the_session_participant_is_found_only_in_its_own_study(alice, study, tmp_path):
    participant = participant_enter(study=study, platform="prolific", platform_id="P1")
    other = build_study(alice, tmp_path / "other", n_items=4, items_per_participant=2, name="other")

    assert study_and_participant(study_public_id=study.public_id, participant_public_id=str(participant.public_id)) == (
        study,
        participant,
    )
    # Another study's URL with this session's ID: the study, and no participant.
    assert study_and_participant(study_public_id=other.public_id, participant_public_id=str(participant.public_id)) == (
        other,
        None,
    )
    for stale in (None, "", "not-a-uuid", str(uuid.uuid4())):
        assert study_and_participant(study_public_id=study.public_id, participant_public_id=stale) == (study, None)
    with pytest.raises(Study.DoesNotExist):
        study_and_participant(study_public_id="no-such-study", participant_public_id=str(participant.public_id))


def test_an_invitation_names_its_study(study):
    invite = InviteToken.objects.create(study=study)
    assert invite_token_study(token=invite.token) == study
    assert invite_token_study(token="forged") is None


def test_a_media_url_answers_only_for_an_active_assignment_of_its_study(study):
    participant = enter_and_start(study, "P-media")
    assignment = participant.assignments.filter(status=Assignment.Status.ACTIVE).order_by("position").first()
    Assignment.objects.filter(pk=assignment.pk).update(
        media={MEDIA_STUDY_KEY: study.public_id, "input/image": "items/a.png"}
    )

    def served(study_public_id: str, key: str) -> str:
        return assignment_media_file(
            study_public_id=study_public_id, assignment_public_id=assignment.public_id, key=key
        )

    assert served(study.public_id, "input/image") == "items/a.png"
    assert served(study.public_id, "v/heatmap/0") == ""  # not on the map
    assert served(study.public_id, MEDIA_STUDY_KEY) == ""  # the map's own entry is not a file
    assert served("another-study", "input/image") == ""
    Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.ANSWERED)
    assert served(study.public_id, "input/image") == ""


def test_exit_for_mturk_posts_back_to_mturk_only(alice, tmp_path):
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="turk")
    for submit_to, action in (
        ("https://workersandbox.mturk.com", "https://workersandbox.mturk.com"),
        ("https://www.mturk.com/", "https://www.mturk.com"),
        ("https://evil.example", "https://www.mturk.com"),
    ):
        participant = participant_enter(
            study=study,
            platform="mturk",
            platform_id=f"W-{submit_to}",
            platform_data={"assignmentId": "A1", "hitId": "H1", "turkSubmitTo": submit_to},
        )
        info = participant_exit(participant=participant)
        assert info["mturk"] == {
            "action": f"{action}/mturk/externalSubmit",
            "assignmentId": "A1",
            "outcome": "complete",
        }
        assert info["redirect"] is None and info["code"] == study.completion_code
