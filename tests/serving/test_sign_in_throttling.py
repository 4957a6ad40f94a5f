"""Sign-in throttling (django-axes) on the sign-in page and /api/token/: after too many wrong
passwords, even the right one is refused for the cool-off, for that username from that
address only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

WRONG_TRIES = 30


def _sign_in(client: Client, password: str):
    return client.post("/accounts/login/", {"username": "alice", "password": password})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_thirty_wrong_passwords_then_the_right_one_does_not_sign_in(alice):
    client = Client(REMOTE_ADDR="198.51.100.4")
    statuses = [_sign_in(client, f"guess-{k}").status_code for k in range(WRONG_TRIES)]

    response = _sign_in(client, "alice-pass-123")

    assert statuses[0] == 200  # the form again, with its error
    assert statuses[-1] == 429
    assert response.status_code == 429
    assert not _signed_in(client)
    page = response.content.decode()
    assert "Too many failed sign-in attempts for this username from your address" in page
    assert "Try again in 15 minutes" in page


def test_the_lockout_starts_at_the_failure_limit(alice, settings):
    client = Client(REMOTE_ADDR="198.51.100.4")
    statuses = [_sign_in(client, f"guess-{k}").status_code for k in range(settings.AXES_FAILURE_LIMIT)]

    assert statuses[:-1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert statuses[-1] == 429


def test_another_address_and_the_end_of_the_cool_off_let_the_owner_in(alice, settings):
    attacker = Client(REMOTE_ADDR="198.51.100.4")
    for k in range(WRONG_TRIES):
        _sign_in(attacker, f"guess-{k}")

    elsewhere = Client(REMOTE_ADDR="203.0.113.9")
    assert _sign_in(elsewhere, "alice-pass-123").status_code == 302
    assert _signed_in(elsewhere)

    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert _sign_in(attacker, "alice-pass-123").status_code == 302
    assert _signed_in(attacker)


def test_behind_the_proxy_the_forwarded_client_is_throttled_not_the_proxy(alice, settings):
    settings.MMEVAL_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    attacker = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.4")
    for k in range(WRONG_TRIES):
        _sign_in(attacker, f"guess-{k}")
    assert _sign_in(attacker, "alice-pass-123").status_code == 429

    # A client's own X-Forwarded-For entry is ignored: the proxy appends the real address.
    spoofing = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.4")
    assert _sign_in(spoofing, "alice-pass-123").status_code == 429

    owner = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert _sign_in(owner, "alice-pass-123").status_code == 302


def test_the_token_endpoint_is_throttled_too(alice):
    client = Client(REMOTE_ADDR="198.51.100.4")
    statuses = [
        client.post("/api/token/", {"username": "alice", "password": f"guess-{k}"}).status_code
        for k in range(WRONG_TRIES)
    ]

    response = client.post(
        "/api/token/", {"username": "alice", "password": "alice-pass-123"}, content_type="application/json"
    )

    assert statuses[0] == 400
    assert statuses[-1] == 429
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.json()["detail"]
    assert not Token.objects.filter(user=alice).exists()


def test_the_token_endpoint_still_answers_the_right_password(alice):
    response = Client().post("/api/token/", {"username": "alice", "password": "alice-pass-123"})

    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=alice).key
