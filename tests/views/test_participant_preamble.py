"""The one participant preamble (``views_participant.participant_required``): every page after
consent finds this browser's participant of the study, or sends a page request to the entry
page and refuses a form with 403, changing nothing."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from annotations.models import Assignment, Participant, Response
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db

PAGES = ["instructions/", "item/", "survey/", "done/"]
FORMS = ["instructions/", "survey/", "item/{assignment}/", "learn/{assignment}/"]


@pytest.fixture
def study(alice, tmp_path):
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=12,
        n_items=4,
        items_per_participant=2,
        raters_per_item=2,
        survey=True,
        name="preamble",
    )


@pytest.mark.parametrize("page", PAGES)
def test_a_page_without_a_participant_goes_to_the_entry_page(study, page):
    response = Client().get(f"/s/{study.public_id}/{page}")
    assert response.status_code == 302 and response["Location"] == f"/s/{study.public_id}/"


@pytest.mark.parametrize("form", FORMS)
def test_a_form_without_a_participant_is_refused_and_changes_nothing(study, form):
    """Also with the ID of a real assignment of someone else: the session, not the URL, is the
    participant."""
    owner = Client()
    assert owner.get(f"/s/{study.public_id}/").status_code == 200
    owner.post(f"/s/{study.public_id}/consent/")
    owner.post(f"/s/{study.public_id}/instructions/")
    assignment = Assignment.objects.filter(status=Assignment.Status.ACTIVE).first()
    before = (
        Participant.objects.count(),
        Response.objects.count(),
        list(Assignment.objects.order_by("pk").values_list("status", flat=True)),
    )

    stranger = Client()
    response = stranger.post(
        f"/s/{study.public_id}/" + form.format(assignment=assignment.public_id),
        {"guess": "red", "confidence": 3, "helpfulness": 3},
    )

    assert response.status_code == 403
    assert b"Your session has ended" in response.content
    assert (
        Participant.objects.count(),
        Response.objects.count(),
        list(Assignment.objects.order_by("pk").values_list("status", flat=True)),
    ) == before


def test_an_unknown_study_is_not_found_on_every_page(study):
    client = Client()
    for page in PAGES + ["", "consent/"]:
        method = client.post if page == "consent/" else client.get
        assert method(f"/s/{uuid.uuid4().hex[:12]}/{page}").status_code == 404, page
