"""The participant's hot routes stay cheap: a query budget per route, checked on a walk
through every phase (pre-test, learning, attention check, test, survey) in an arm that shows
every kind of view. Query counts are deterministic, unlike timings; the budgets count the
session read that database-backed sessions cost (none with the shared cache of production),
and the transaction's BEGIN and COMMIT. Item pages carry their pictures (no media
request); a media URL, still answered, costs one query and no session."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from annotations.models import Participant
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as under gunicorn

SRC = re.compile(r'src="((?:/s/|data:)[^"]+)"')  # the media (the static timing script costs no query)
BUDGET = {
    "entry GET": 6,
    "consent POST": 18,  # the session key rotates: its new row, the old one deleted, then saved
    "instructions POST": 14,
    "item GET": 7,
    "media GET": 1,
    "answer POST": 11,  # + one single-row update: the dashboard recomputes in the background (services/dashboard.py)
    "learn POST": 9,
    "survey POST": 11,
    "done GET": 2,
}


def test_every_participant_route_keeps_to_its_query_budget(
    alice, tmp_path, django_assert_max_num_queries, django_assert_num_queries
):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=8,
        items_per_participant=3,
        raters_per_item=2,
        conditions=[
            ConditionSpec("everything", ["heatmap", "tokens", "interaction", "top_pairs", "share"]),
            ConditionSpec("baseline"),
        ],
        learning_items=2,
        attention_checks=1,
        pretest=True,
        survey=True,
        name="budget",
    )
    client, base = Client(), f"/s/{study.public_id}"
    routes_seen = set()

    def request(route: str, method, *args):
        routes_seen.add(route)
        check = django_assert_num_queries if route == "media GET" else django_assert_max_num_queries
        with check(BUDGET[route]):
            return method(*args)

    request("entry GET", client.get, f"{base}/?PROLIFIC_PID=q&STUDY_ID=s&SESSION_ID=x")
    request("consent POST", client.post, f"{base}/consent/")
    request("instructions POST", client.post, f"{base}/instructions/")
    participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
    assert participant.condition.views  # the first of a block of two: check it is the costly arm
    n_inlined = 0
    while (page := request("item GET", client.get, f"{base}/item/")).status_code == 200:
        sources = SRC.findall(page.content.decode())
        assert all(src.startswith("data:image/png;base64,") for src in sources)  # the page carries them
        n_inlined += len(sources)
        assignment = participant.assignments.filter(status="active").order_by("position").first()
        # The media URL still answers, for anything else that asks.
        url = f"{base}/a/{assignment.public_id}/input/image"
        assert request("media GET", client.get, url).status_code == 200
        if assignment.phase == "learning":
            request("learn POST", client.post, f"{base}/learn/{assignment.public_id}/")
        else:
            request(
                "answer POST",
                client.post,
                f"{base}/item/{assignment.public_id}/",
                {"guess": assignment.expected_answer or assignment.candidate_order[0], "confidence": 3},
            )
    request("survey POST", client.post, f"{base}/survey/", {"helpfulness": "4", "comment": ""})
    assert request("done GET", client.get, f"{base}/done/").status_code == 302
    assert routes_seen == set(BUDGET)
    assert n_inlined > 3 * 4 * 4  # three test pages, 4 image views per each of 4 candidates
