"""Participant entry limits (annotations/services/entry_limits.py), counted in the shared
Redis cache: one client cannot take a study's places, a lab behind one address still gets in,
and a worker ID cannot consent again and again. A refusal is a 429 page that creates nobody."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.test import Client
from redis import Redis

from annotations.models import Participant
from annotations.services import entry_limits
from annotations.services.entry_limits import study_places
from tests.builders.studies import build_study

pytestmark = pytest.mark.django_db


WINDOW = 600


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """The counting windows are fixed (every 10 minutes on the clock): a test whose entries
    straddled a window's end saw the counts start again there, as they should (once in a suite
    run, about 1 in 200). The limits' clock stands still in the middle of a window instead."""
    now = time.time()
    middle = now - now % WINDOW + WINDOW / 2
    monkeypatch.setattr(entry_limits, "time", SimpleNamespace(time=lambda: middle))


@pytest.fixture(autouse=True)
def limits_on(settings):
    """The shipped limits, counted in the test Redis under a key prefix of this test's own."""
    prefix = f"mmeval-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "annotations.cache.TolerantRedisCache",
            "LOCATION": django_settings.CELERY_BROKER_URL,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.MMEVAL_ENTRY_WINDOW_SECONDS = WINDOW
    settings.MMEVAL_ENTRY_ADDRESS_LIMIT = 30
    settings.MMEVAL_ENTRY_PLATFORM_ID_LIMIT = 5
    settings.MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT = 25
    yield
    redis = Redis.from_url(django_settings.CELERY_BROKER_URL)
    for key in redis.scan_iter(f"{prefix}:*"):
        redis.delete(key)


def _enter(study, *, address: str, pid: str | None = None, session_id: str = "x"):
    """A fresh browser from ``address`` follows the study link and consents: the consent reply."""
    client = Client(REMOTE_ADDR=address)
    query = f"?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID={session_id}" if pid else ""
    assert client.get(f"/s/{study.public_id}/{query}").status_code == 200
    return client.post(f"/s/{study.public_id}/consent/")


def _assert_throttled(response, words: str) -> None:
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert words in response.content.decode()


def test_one_address_cannot_take_a_study(alice, tmp_path):
    """The attack seen: one client took all 8 places in seconds. Now it gets a quarter of
    them; everyone else still finds room."""
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=2, name="small")
    assert study_places(study=study) == 8

    replies = [_enter(study, address="198.51.100.7", pid=f"bot{k}") for k in range(8)]

    assert [reply.status_code for reply in replies] == [302, 302] + [429] * 6
    _assert_throttled(replies[-1], "as many people from your network as it can")
    assert Participant.objects.filter(study=study).count() == 2
    assert all(_enter(study, address=f"203.0.113.{k}", pid=f"real{k}").status_code == 302 for k in range(6))
    assert Participant.objects.filter(study=study).count() == 8


def test_a_lab_behind_one_address_gets_in(alice, tmp_path):
    """Twenty students in one room (one NAT address) join a study of 80 places together."""
    study = build_study(
        alice, tmp_path, n_dataset_items=40, n_items=40, items_per_participant=2, raters_per_item=2, name="lab"
    )
    assert study_places(study=study) == 80

    replies = [_enter(study, address="192.0.2.10") for _ in range(20)]

    assert [reply.status_code for reply in replies] == [302] * 20
    assert Participant.objects.filter(study=study).count() == 20


def test_consents_from_one_address_are_limited_per_window(alice, tmp_path, settings):
    """60 consents from one address made 60 participants. Now the window's limit holds
    across studies, and another address is unaffected."""
    settings.MMEVAL_ENTRY_ADDRESS_LIMIT = 4
    settings.MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT = 100
    first = build_study(alice, tmp_path, n_items=10, items_per_participant=2, raters_per_item=4, name="first")
    second = build_study(alice, tmp_path, n_items=10, items_per_participant=2, raters_per_item=4, name="second")

    replies = [_enter(study, address="198.51.100.9") for study in (first, second, first, second, first, second)]

    assert [reply.status_code for reply in replies] == [302, 302, 302, 302, 429, 429]
    _assert_throttled(replies[-1], "Please try again in")
    assert Participant.objects.count() == 4
    assert _enter(first, address="203.0.113.50").status_code == 302


def test_one_worker_id_cannot_enter_again_and_again(alice, tmp_path, settings):
    """Following the link and consenting count for the worker ID, from any address: guessing
    a worker's platform session (SESSION_ID) or hammering with one ID stops at the limit."""
    settings.MMEVAL_ENTRY_PLATFORM_ID_LIMIT = 5
    study = build_study(alice, tmp_path, n_items=10, items_per_participant=2, raters_per_item=4, name="pid")
    link = f"/s/{study.public_id}/?PROLIFIC_PID=W1&STUDY_ID=s&SESSION_ID="
    assert _enter(study, address="203.0.113.1", pid="W1", session_id="real").status_code == 302  # 2 entries

    guesses = [Client(REMOTE_ADDR=f"198.51.100.{k}").get(f"{link}guess{k}") for k in range(5)]

    assert [reply.status_code for reply in guesses] == [200, 200, 200, 429, 429]  # "started elsewhere", then 429
    assert "started in another session" in guesses[0].content.decode()
    _assert_throttled(guesses[-1], "This worker ID has opened the study too many times")
    assert Participant.objects.filter(study=study, platform_id="W1").count() == 1


def test_a_broken_cache_does_not_lock_the_crowd_out(alice, tmp_path, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "annotations.cache.TolerantRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    study = build_study(alice, tmp_path, n_items=4, items_per_participant=2, raters_per_item=2, name="nocache")

    assert [_enter(study, address="198.51.100.7").status_code for _ in range(3)] == [302] * 3
