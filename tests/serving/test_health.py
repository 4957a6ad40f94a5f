"""/healthz and /readyz through the real middleware stack, against real Postgres and Redis,
and against a broker that refuses the connection or accepts it and never answers."""

from __future__ import annotations

import socket
import threading

import pytest
from django.test import Client

from .conftest import free_port

# Generous: /readyz gives up after 2 s; this only catches a request that hangs outright.
ANSWER_WITHIN_S = 15


def _get(path: str, **headers):
    """GET in a thread, so a hanging endpoint fails the test instead of stalling it."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(response=Client(**headers).get(path)), daemon=True)
    thread.start()
    thread.join(ANSWER_WITHIN_S)
    assert "response" in result, f"{path} did not answer within {ANSWER_WITHIN_S} s"
    return result["response"]


def test_healthz_answers_without_the_database_for_any_host():
    # No django_db mark: touching the database here would be an error.
    response = _get("/healthz", HTTP_HOST="10.1.2.3:8000")  # a probe uses the container's address

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_database_and_broker_answer(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/13"

    response = _get("/readyz/")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_readyz_names_a_broker_that_refuses(settings):
    port = free_port()  # nothing listens there
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"

    response = _get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("failed: ")


@pytest.fixture
def silent_listener():
    """A port that accepts connections (the kernel completes the handshake) and never
    sends a byte back."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.django_db
def test_readyz_answers_when_the_broker_accepts_and_never_replies(settings, silent_listener):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_listener}/0"

    response = _get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] in ("no answer within 2 s", "failed: TimeoutError")


def test_readyz_without_a_broker_reports_in_process_tasks(settings, db):
    settings.CELERY_BROKER_URL = ""

    response = _get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["broker"].startswith("ok (none configured")
