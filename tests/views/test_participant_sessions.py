"""Sessions under several web processes: read from the shared Redis cache (no session query
on a participant page), written through to the database, and still served from the database
when Redis is down (participants must not notice a broker outage)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotations.models import Participant
from tests.builders.studies import build_study
from tests.tcp_proxy import TcpProxy

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


def _session_cookie(client: Client) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


@pytest.mark.parametrize("engine", ["db", "shared cache"])
def test_the_session_key_rotates_at_consent_and_keeps_the_participant(study, settings, engine):
    """Session fixation: a key planted before consent (a link carrying a cookie, a shared
    machine) is worth nothing after it; the participant carries on under the new key."""
    if engine == "shared cache":
        _use_cache(settings, django_settings.CELERY_BROKER_URL)
    base = f"/s/{study.public_id}"
    client = Client()
    assert client.get(f"{base}/?PROLIFIC_PID=f1&STUDY_ID=s&SESSION_ID=x").status_code == 200
    planted = _session_cookie(client)

    assert client.post(f"{base}/consent/").status_code == 302

    assert _session_cookie(client) != planted
    assert client.get(f"{base}/instructions/").status_code == 200
    attacker = Client()
    attacker.cookies[django_settings.SESSION_COOKIE_NAME] = planted
    assert attacker.get(f"{base}/instructions/").url == f"{base}/"  # the planted key names nobody
    assert attacker.post(f"{base}/instructions/").status_code == 403


def test_a_returning_worker_gets_a_new_session_key_too(study):
    base = f"/s/{study.public_id}"
    first = Client()
    first.get(f"{base}/?PROLIFIC_PID=f2&STUDY_ID=s&SESSION_ID=x")
    first.post(f"{base}/consent/")
    again = Client()
    again.get(f"{base}/")  # a session before the worker's link is followed
    planted = _session_cookie(again)

    assert again.get(f"{base}/?PROLIFIC_PID=f2&STUDY_ID=s&SESSION_ID=x").url == f"{base}/instructions/"

    assert _session_cookie(again) != planted


def test_a_stale_cached_session_never_ends_a_session_the_database_holds(study, settings):
    """Redis restarted from an old snapshot (or a write it dropped while stalled) holds the
    session as it was before consent: the database's session wins, the participant goes on,
    and the cache is repaired."""
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.core.cache import caches

    _use_cache(settings, django_settings.CELERY_BROKER_URL)
    base = f"/s/{study.public_id}"
    client = Client()
    client.get(f"{base}/?PROLIFIC_PID=st1&STUDY_ID=s&SESSION_ID=x")
    client.post(f"{base}/consent/")
    client.post(f"{base}/instructions/")
    store = SessionStore(session_key=_session_cookie(client))
    current = store.load()
    assert f"participant:{study.public_id}" in current
    stale = {key: value for key, value in current.items() if not key.startswith("participant:")}
    cache = caches[django_settings.SESSION_CACHE_ALIAS]
    cache.set(store.cache_key, stale, 3600)

    assert client.get(f"{base}/item/").status_code == 200  # not sent back to the entry page
    participant = Participant.objects.get(platform_id="st1")
    assignment = participant.assignments.filter(status="active").order_by("position").first()
    cache.set(store.cache_key, stale, 3600)
    answer = {"guess": assignment.candidate_order[0], "confidence": 3}
    assert client.post(f"{base}/item/{assignment.public_id}/", answer).status_code == 302  # not "session ended"
    assert participant.responses.count() == 1
    assert cache.get(store.cache_key)[f"participant:{study.public_id}"] == str(participant.public_id)


def test_a_stalled_session_cache_never_ends_a_session(study, settings):
    """Redis stalls while the participant consents: the session writes to it time out and are
    lost. After the stall the participant carries on; the database held their session."""
    redis_url = urlsplit(django_settings.CELERY_BROKER_URL)
    proxy = TcpProxy(target_host=redis_url.hostname, target_port=redis_url.port or 6379)
    try:
        _use_cache(settings, f"redis://127.0.0.1:{proxy.port}{redis_url.path or '/0'}")
        base = f"/s/{study.public_id}"
        client = Client()
        assert client.get(f"{base}/?PROLIFIC_PID=stall1&STUDY_ID=s&SESSION_ID=x").status_code == 200

        proxy.hold(drop=True)
        assert client.post(f"{base}/consent/").status_code == 302
        proxy.release()

        assert client.get(f"{base}/instructions/").status_code == 200  # not "Your session has ended"
        assert client.post(f"{base}/instructions/").status_code == 302
        assert client.get(f"{base}/item/").status_code == 200
    finally:
        proxy.close()
