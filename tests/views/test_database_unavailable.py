"""A database that goes away mid-study gives participants a "please retry" page (503 with
Retry-After, in the participant style), never a 500, and loses no acknowledged answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from html import escape
from pathlib import Path

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import OperationalError, connection, connections
from django.test import Client, RequestFactory

from annotations import views_participant
from annotations.middleware import database_unavailable_response
from annotations.models import PUBLIC_TITLE_DEFAULT, Participant, Response, Study
from annotations.selectors.participants import participant_frame_policy
from tests.builders.studies import build_study
from tests.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)  # connections really break: no test transaction around


@pytest.fixture
def study(alice, tmp_path):
    return build_study(alice, tmp_path, n_items=6, items_per_participant=3, raters_per_item=2, name="flaky")


def _enter(client: Client, study) -> Participant:
    client.get(f"/s/{study.public_id}/?PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=x")
    client.post(f"/s/{study.public_id}/consent/")
    client.post(f"/s/{study.public_id}/instructions/")
    return Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])


def _current(participant):
    return participant.assignments.filter(status="active").order_by("position").first()


def _terminate_my_connection() -> None:
    """pg_terminate_backend of this thread's connection, from another connection, as an
    operator (or a failover) would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    def terminate():
        from django.db import connection as other

        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                assert cursor.fetchone()[0] is True
        finally:
            other.close()

    thread = threading.Thread(target=terminate)
    thread.start()
    thread.join(timeout=30)


def _assert_retry_page(response) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b'id="retry"' in response.content and b"Please retry in a moment" in response.content
    assert response["Content-Security-Policy"] == participant_frame_policy()
    assert "https://worker.mturk.com" in response["Content-Security-Policy"].split()


def test_a_cut_connection_gives_a_retry_page_and_the_retry_stores_the_answer_once(study):
    client = Client()
    participant = _enter(client, study)
    assignment = _current(participant)
    assert client.get(f"/s/{study.public_id}/item/").status_code == 200

    _terminate_my_connection()
    page = client.get(f"/s/{study.public_id}/item/")
    _assert_retry_page(page)
    assert b"tries again by itself" in page.content
    assert client.get(f"/s/{study.public_id}/item/").status_code == 200  # a fresh connection

    url = f"/s/{study.public_id}/item/{assignment.public_id}/"
    answer = {"guess": assignment.candidate_order[1], "confidence": 4}
    _terminate_my_connection()
    posted = client.post(url, answer)
    _assert_retry_page(posted)
    assert b'href="/s/' + study.public_id.encode() + b'/"' in posted.content  # back through the entry page
    assert not Response.objects.filter(assignment=assignment).exists()  # rolled back: not acknowledged
    assert client.post(url, answer).status_code == 302
    assert client.post(url, answer).status_code == 302  # a second retry changes nothing
    stored = Response.objects.get(assignment=assignment)
    assert (stored.guess, stored.confidence) == (assignment.candidate_order[1], 4)


def test_an_answer_committed_before_the_failure_is_found_on_the_retry(study, monkeypatch):
    """The connection breaks after the answer was committed, before the reply: the
    participant sees the retry page, and the retry finds the stored answer."""
    client = Client()
    participant = _enter(client, study)
    assignment = _current(participant)
    client.get(f"/s/{study.public_id}/item/")
    real_submit = views_participant.response_submit

    def submit_then_fail(**kwargs):
        real_submit(**kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(views_participant, "response_submit", submit_then_fail)
    url = f"/s/{study.public_id}/item/{assignment.public_id}/"
    answer = {"guess": assignment.candidate_order[0], "confidence": 2}
    _assert_retry_page(client.post(url, answer))
    monkeypatch.setattr(views_participant, "response_submit", real_submit)
    retried = client.post(url, answer)
    assert retried.status_code == 302 and retried.url.endswith("/item/")
    assert Response.objects.filter(assignment=assignment).count() == 1


def test_a_failure_outside_the_view_is_a_retry_page_too(study, monkeypatch):
    """Saving the session happens in a middleware, after the view: still no 500."""

    def broken_save(self, must_create=False):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(SessionStore, "save", broken_save)
    client = Client(raise_request_exception=False)
    response = client.get(f"/s/{study.public_id}/")  # a first visit stores a new session
    _assert_retry_page(response)
    assert b"tries again by itself" in response.content


def test_a_connection_cut_while_the_session_is_saved_gives_the_retry_page(study, monkeypatch):
    """Django turns a failed update of a stored session into SessionInterrupted (a bare 400):
    the participant gets the retry page instead, and the retry works."""
    client = Client()
    entry = f"/s/{study.public_id}/?PROLIFIC_PID=cut1&STUDY_ID=s&SESSION_ID=x"
    assert client.get(entry).status_code == 200  # the session is stored
    real_remember = views_participant.participant_title_remember

    def remember_then_cut(**kwargs):
        real_remember(**kwargs)
        _terminate_my_connection()  # after the view's reads, before the session is saved

    monkeypatch.setattr(views_participant, "participant_title_remember", remember_then_cut)
    page = client.get(entry)
    _assert_retry_page(page)
    monkeypatch.setattr(views_participant, "participant_title_remember", real_remember)
    assert client.get(entry).status_code == 200
    assert client.post(f"/s/{study.public_id}/consent/").status_code == 302
    assert Participant.objects.filter(study=study, platform_id="cut1").count() == 1


@pytest.fixture
def database_through_proxy(settings):
    """This process's connections go to Postgres through a proxy that the test can hang,
    with the web role's read timeout (mmeval/database.py) at 2 s."""
    from mmeval.database import database_read_timeout_install

    db = connections.settings["default"]
    original = (db["HOST"], db["PORT"])
    proxy = TcpProxy(target_host=db["HOST"] or "127.0.0.1", target_port=int(db["PORT"] or 5432))
    connections.close_all()
    db["HOST"], db["PORT"] = "127.0.0.1", str(proxy.port)
    database_read_timeout_install(seconds=2)
    yield proxy
    database_read_timeout_install(seconds=0)
    proxy.release()
    connections.close_all()
    db["HOST"], db["PORT"] = original
    proxy.close()


def test_a_hung_database_gives_the_retry_page_while_it_still_hangs(study, database_through_proxy):
    """A kept connection (CONN_MAX_AGE) to a database that stops answering mid-study: the
    participant gets the retry page while the database still hangs (it hangs for up to 90 s
    here, and the request ends long before), not when gunicorn kills the worker."""
    proxy = database_through_proxy
    client = Client()
    _enter(client, study)
    assert client.get(f"/s/{study.public_id}/item/").status_code == 200

    proxy.hold()
    ends_the_hang = threading.Timer(90, proxy.release)
    ends_the_hang.start()
    try:
        page = client.get(f"/s/{study.public_id}/item/")
        ended_while_hung = proxy.held
    finally:
        ends_the_hang.cancel()
        proxy.release()

    assert ended_while_hung, "the request waited for the database to come back"
    _assert_retry_page(page)
    assert client.get(f"/s/{study.public_id}/item/").status_code == 200  # a fresh connection


def test_the_web_process_installs_the_read_timeout():
    """gunicorn and runserver load mmeval.wsgi: that is where the web role's bound on a
    database that stops answering is put in place (workers and commands keep theirs off)."""
    code = (
        "import psycopg2.extensions as e; assert e.get_wait_callback() is None; "
        "import mmeval.wsgi; print(e.get_wait_callback().__name__)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mmeval.settings", "DB_READ_TIMEOUT": "7"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wait_with_deadline"


def test_an_unreachable_database_at_entry_creates_nobody(study, monkeypatch):
    def unreachable(**kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(views_participant, "participant_enter", unreachable)
    client = Client()
    client.get(f"/s/{study.public_id}/")
    _assert_retry_page(client.post(f"/s/{study.public_id}/consent/"))
    assert not Participant.objects.exists()


def test_the_retry_page_shows_the_public_title_it_remembered_never_the_internal_name(study, monkeypatch):
    """The retry page may not touch the database: it shows the public title the entry page
    left in the cache, and the default title for a study it has not seen."""

    def unreachable(**kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    Study.objects.filter(pk=study.pk).update(public_title="Pictures and questions")
    monkeypatch.setattr(views_participant, "participant_enter", unreachable)
    client = Client()
    assert "Pictures and questions" in client.get(f"/s/{study.public_id}/").content.decode()
    page = client.post(f"/s/{study.public_id}/consent/")
    _assert_retry_page(page)
    html = page.content.decode()
    assert "<title>Please retry in a moment · Pictures and questions</title>" in html
    assert '<span class="brand">Pictures and questions</span>' in html and study.name not in html
    unseen = database_unavailable_response(RequestFactory().post("/s/neverseen1234567/consent/"))
    assert f'<span class="brand">{escape(PUBLIC_TITLE_DEFAULT)}</span>' in unseen.content.decode()


def test_api_clients_get_json():
    response = database_unavailable_response(RequestFactory().get("/api/studies/"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response["Content-Type"] == "application/json" and b"retry" in response.content


@pytest.mark.django_db(transaction=True)
def test_a_background_job_of_a_web_process_waits_as_long_as_its_statements_take():
    """The web role's bound (1 s here) cuts a silent statement in a request thread; a thread of
    embedded mode (services/background.py) runs inside ``database_waits_unbounded`` and its
    statement of twice the bound completes."""
    from mmeval.database import database_read_timeout_install, database_waits_unbounded

    connections.close_all()
    database_read_timeout_install(seconds=1)
    try:
        results = {}

        def background() -> None:
            try:
                with database_waits_unbounded(), connections["default"].cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(2), 'done'")
                    results["background"] = cursor.fetchone()[1]
            finally:
                connections.close_all()

        thread = threading.Thread(target=background)
        thread.start()
        thread.join(timeout=120)
        assert results == {"background": "done"}
        with pytest.raises(OperationalError, match="DB_READ_TIMEOUT"):
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(2)")
    finally:
        database_read_timeout_install(seconds=0)
        connections.close_all()
