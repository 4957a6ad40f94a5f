"""The item page lists the next item's pictures for the browser to fetch ahead: exactly the
pictures the next page loads, answering before that page is served, without starting its
response time; and the item page carries the timing marker and script."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from annotations.models import Assignment, Participant
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db

PREFETCH = re.compile(r'<link rel="prefetch" as="image" href="([^"]+)">')
MEDIA_SRC = re.compile(r'src="(/s/[^"]+/a/[^"]+)"')


def _enter(client: Client, study) -> Participant:
    client.get(f"/s/{study.public_id}/")
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def test_each_page_prefetches_exactly_the_next_pages_pictures(alice, tmp_path):
    study = build_study(
        alice,
        tmp_path,
        n_items=6,
        items_per_participant=3,
        raters_per_item=2,
        conditions=[ConditionSpec("baseline"), ConditionSpec("heat", ["heatmap", "share"])],
        learning_items=1,
        pretest=True,
    )
    for _ in range(2):  # one participant per arm
        client = Client()
        participant = _enter(client, study)
        listed: list[str] | None = None  # what the page before listed
        pages = 0
        while (assignment := participant.assignments.filter(status="active").order_by("position").first()) is not None:
            page = client.get(f"/s/{study.public_id}/item/").content.decode()
            pages += 1
            if listed is not None:  # the page listed before is this page's pictures, no more, no less
                assert sorted(set(MEDIA_SRC.findall(page))) == listed, assignment.phase
            if assignment.phase == "learning":
                assert not PREFETCH.findall(page)
                listed = None
                client.post(f"/s/{study.public_id}/learn/{assignment.public_id}/")
                continue
            assert '<form method="post"' in page and "data-timing" in page and "mmeval/timing.js" in page
            listed = sorted(set(PREFETCH.findall(page)))
            following = participant.assignments.filter(status="active", position__gt=assignment.position)
            following = following.order_by("position").first()
            if following is None:
                assert listed == []
            else:
                assert listed and all(f"/a/{following.public_id}/" in url for url in listed)
                for url in listed:  # they answer now, before the next page exists
                    response = client.get(url)
                    assert response.status_code == 200 and response["Content-Type"] == "image/png"
                # Fetching ahead does not start the next item's response time.
                assert Assignment.objects.get(pk=following.pk).served_at is None
            client.post(
                f"/s/{study.public_id}/item/{assignment.public_id}/",
                {"guess": assignment.expected_answer or assignment.candidate_order[0], "confidence": 3},
            )
        assert pages == participant.assignments.count()
