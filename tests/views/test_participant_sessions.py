"""Sessions under several web processes: read from the shared Redis cache (no session query
on a participant page), written through to the database, and still served from the database
when Redis is down (participants must not notice a broker outage)."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotations.models import Participant
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db


def _use_cache(settings, location: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "annotations.cache.TolerantRedisCache",
            "LOCATION": location,
            "KEY_PREFIX": "mmeval-test",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"


def _walk_one_item(client: Client, study) -> list[str]:
    """Enter, start, and answer the first item; the SQL of the item page."""
    base = f"/s/{study.public_id}"
    assert client.get(f"{base}/?PROLIFIC_PID=s1&STUDY_ID=s&SESSION_ID=x").status_code == 200
    assert client.post(f"{base}/consent/").status_code == 302
    assert client.post(f"{base}/instructions/").status_code == 302
    with CaptureQueriesContext(connection) as item_page:
        assert client.get(f"{base}/item/").status_code == 200
    sql = [query["sql"] for query in item_page.captured_queries]  # now: the next request clears the log
    assert len(sql) >= 3
    participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
    assignment = participant.assignments.filter(status="active").order_by("position").first()
    answer = {"guess": assignment.candidate_order[0], "confidence": 3}
    assert client.post(f"{base}/item/{assignment.public_id}/", answer).status_code == 302
    assert participant.responses.count() == 1
    return sql


@pytest.fixture
def study(alice, tmp_path):
    return build_study(alice, tmp_path, n_items=4, items_per_participant=2, name="sessions")


def test_participant_pages_read_the_session_from_the_shared_cache(study, settings):
    _use_cache(settings, django_settings.CELERY_BROKER_URL)  # the test Redis (./run test sets it)
    sql = _walk_one_item(Client(), study)
    assert not any("django_session" in query for query in sql)


def test_a_redis_outage_falls_back_to_the_database(study, settings):
    _use_cache(settings, "redis://127.0.0.1:1/0")  # nothing listens there
    sql = _walk_one_item(Client(), study)
    assert any("django_session" in query for query in sql)
