"""The dashboard request never computes the analysis (issue 22): it shows the latest result
computed in the background, its age and the responses it counts, and "updating" while a newer
one is on its way. Refreshes are debounced: a burst of requests publishes one task. (The real
worker's side: tests/integration/test_dashboard_worker.py.)"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import DashboardSnapshot, Participant, Response
from annotations.services import analysis, dashboard
from tests.builders.answered_study import _respond, build_answered_study

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.urls")]


@pytest.fixture(autouse=True)
def fast(monkeypatch, settings):
    settings.MMEVAL_DASHBOARD_DEBOUNCE_SECONDS = 0  # every request checks the data version
    monkeypatch.setattr("annotations.services.analysis.DEFAULT_RESAMPLES", 100)
    monkeypatch.setattr("annotations.services.analysis.DEFAULT_PERMUTATIONS", 100)


@pytest.fixture
def computations(monkeypatch):
    """The threads that ran the analysis entry point, one entry per call."""
    calls: list[str] = []
    compute = analysis.study_dashboard_compute

    def counted(*, study):
        calls.append(threading.current_thread().name)
        return compute(study=study)

    monkeypatch.setattr(analysis, "study_dashboard_compute", counted)
    return calls


@pytest.fixture
def dispatched(monkeypatch):
    """The refresh tasks handed over (instead of published): study IDs, in order."""
    sent: list[int] = []
    monkeypatch.setattr(dashboard, "_dispatch", lambda *, study_id: sent.append(study_id))
    return sent


@pytest.fixture
def study(alice, tmp_path):
    return build_answered_study(alice, tmp_path, participants_per_arm=3)


def _page(client, study) -> str:
    response = client.get(f"/studies/{study.pk}/dashboard/")
    assert response.status_code == 200
    return response.content.decode("utf-8")


def _add_response(study) -> Response:
    """A new participant's answer (the data moves)."""
    done = Response.objects.filter(participant__study=study, participant__condition__is_baseline=False).first()
    newcomer = Participant.objects.create(
        study=study, condition=done.participant.condition, platform="prolific", platform_id=uuid.uuid4().hex
    )
    return _respond(
        newcomer,
        item=done.item,
        phase="test",
        position=0,
        guess=done.model_prediction,
        candidates=done.candidate_order,
        confidence=4,
        rt_ms=3000,
        prediction=done.model_prediction,
        gold=done.gold_label,
        when=timezone.now(),
    )


def test_the_request_path_never_calls_the_analysis(client, alice, study, computations, dispatched):
    client.force_login(alice)
    html = _page(client, study)  # the very first time: pending, a refresh asked for
    assert 'id="analysis-pending"' in html and 'id="accuracy"' not in html
    assert computations == [] and dispatched == [study.pk]
    assert DashboardSnapshot.objects.get(study=study).status == "queued"

    assert dashboard.dashboard_refresh_run(study_id=study.pk, worker="test-worker") == "done"  # the worker's part
    assert len(computations) == 1
    html = _page(client, study)
    assert 'id="accuracy"' in html and 'id="analysis-pending"' not in html
    n = Response.objects.filter(participant__study=study).exclude(participant__platform="preview").count()
    assert f'<b id="analysis-responses">{n}</b> responses' in html
    assert 'id="analysis-updating" hidden' in html  # nothing newer on its way

    _add_response(study)  # the data moved: the old result is served, marked as updating
    html = _page(client, study)
    assert 'id="accuracy"' in html and f'<b id="analysis-responses">{n}</b>' in html
    assert 'id="analysis-updating" hidden' not in html and 'id="analysis-updating"' in html
    assert dispatched == [study.pk, study.pk]
    assert len(computations) == 1  # still only the worker's


def test_the_page_shows_the_age_of_the_result(client, alice, study, dispatched):
    dashboard.dashboard_refresh_request(study_id=study.pk)
    dashboard.dashboard_refresh_run(study_id=study.pk, worker="test-worker")
    DashboardSnapshot.objects.filter(study=study).update(computed_at=timezone.now() - timedelta(seconds=40))
    client.force_login(alice)
    html = _page(client, study)
    assert "Analysis as of" in html
    age = re.search(r'id="analysis-age">(\d+) s ago</time>', html)
    assert age and 40 <= int(age.group(1)) < 90  # 40 s, plus however long the request took
    DashboardSnapshot.objects.filter(study=study).update(computed_at=timezone.now() - timedelta(minutes=12))
    age = re.search(r'id="analysis-age">(\d+) min ago</time>', _page(client, study))
    assert age and int(age.group(1)) in (12, 13)
    progress = client.get(f"/studies/{study.pk}/dashboard/progress.json").json()
    assert progress["analysis"]["updating"] is False and progress["analysis"]["computed_at"]


def test_a_burst_of_refresh_requests_publishes_one_task(study, dispatched):
    for _ in range(25):
        dashboard.dashboard_refresh_request(study_id=study.pk)
    assert dispatched == [study.pk]
    assert DashboardSnapshot.objects.get(study=study).status == "queued"


def test_data_that_moves_while_it_runs_queues_one_more_computation(study, dispatched, computations, monkeypatch):
    dashboard.dashboard_refresh_request(study_id=study.pk)
    compute = analysis.study_dashboard_compute

    def with_a_burst_meanwhile(*, study):
        for _ in range(10):  # responses arrive while the analysis runs
            _add_response(study)
            dashboard.dashboard_refresh_request(study_id=study.pk)
        return compute(study=study)

    monkeypatch.setattr(analysis, "study_dashboard_compute", with_a_burst_meanwhile)
    assert dashboard.dashboard_refresh_run(study_id=study.pk, worker="w") == "queued again"
    assert dispatched == [study.pk]  # published on commit (the test's transaction never commits)
    snapshot = DashboardSnapshot.objects.get(study=study)
    assert (snapshot.status, snapshot.rerun, snapshot.computations) == ("queued", False, 1)
    monkeypatch.setattr(analysis, "study_dashboard_compute", compute)
    assert dashboard.dashboard_refresh_run(study_id=study.pk, worker="w") == "done"
    snapshot.refresh_from_db()
    assert (snapshot.status, snapshot.computations) == ("idle", 2)
    n = Response.objects.filter(participant__study=study).exclude(participant__platform="preview").count()
    assert snapshot.n_responses == n


def test_a_second_task_finds_nothing_to_do(study, dispatched):
    dashboard.dashboard_refresh_request(study_id=study.pk)
    assert dashboard.dashboard_refresh_run(study_id=study.pk, worker="w") == "done"
    assert dashboard.dashboard_refresh_run(study_id=study.pk, worker="w") == "skipped"
    assert DashboardSnapshot.objects.get(study=study).computations == 1


def test_a_failed_refresh_is_shown_and_asked_again_when_the_data_moves(client, alice, study, dispatched, monkeypatch):
    def broken(*, study):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(analysis, "study_dashboard_compute", broken)
    dashboard.dashboard_refresh_request(study_id=study.pk)
    assert dashboard.dashboard_refresh_run(study_id=study.pk, worker="w") == "failed"
    client.force_login(alice)
    html = _page(client, study)
    assert "The last update failed: RuntimeError: out of memory" in html
    assert DashboardSnapshot.objects.get(study=study).status == "failed"  # not retried on every load
    assert dispatched == [study.pk]
    _add_response(study)
    html = _page(client, study)
    assert DashboardSnapshot.objects.get(study=study).status == "queued" and dispatched == [study.pk, study.pk]


def test_a_lost_refresh_is_published_again(study, dispatched, settings):
    dashboard.dashboard_refresh_request(study_id=study.pk)
    long_ago = timezone.now() - timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS * 3 + 60)
    DashboardSnapshot.objects.filter(study=study).update(requested_at=long_ago, dispatched_at=long_ago)
    dashboard.dashboard_refresh_request(study_id=study.pk)
    assert dispatched == [study.pk, study.pk]


def test_an_answer_asks_for_a_refresh_in_one_update_once_the_dashboard_exists(
    study, dispatched, django_assert_num_queries
):
    with django_assert_num_queries(1):
        dashboard.dashboard_response_stored(study_id=study.pk)  # never opened: no snapshot, no work
    assert dispatched == [] and not DashboardSnapshot.objects.filter(study=study).exists()
    dashboard.dashboard_refresh_request(study_id=study.pk)  # the dashboard was opened
    assert dispatched == [study.pk]
    for _ in range(5):
        with django_assert_num_queries(1):
            dashboard.dashboard_response_stored(study_id=study.pk)  # queued already: nothing more
    assert dispatched == [study.pk]
    long_ago = timezone.now() - timedelta(hours=1)
    DashboardSnapshot.objects.filter(study=study).update(
        status="running", heartbeat_at=timezone.now(), requested_at=long_ago, dispatched_at=long_ago
    )
    for _ in range(5):
        with django_assert_num_queries(1):
            dashboard.dashboard_response_stored(study_id=study.pk)
    running = DashboardSnapshot.objects.get(study=study)
    assert (running.status, running.rerun) == ("running", True)
    assert running.requested_at == running.dispatched_at == long_ago  # a running one keeps its times
    assert dispatched == [study.pk, study.pk]  # one more message for the whole computation
    for failed_or_idle in ("idle", "failed"):
        DashboardSnapshot.objects.filter(study=study).update(
            status=failed_or_idle, rerun=True, requested_at=long_ago, dispatched_at=long_ago
        )
        before = timezone.now()
        dashboard.dashboard_response_stored(study_id=study.pk)
        queued = DashboardSnapshot.objects.get(study=study)
        assert (queued.status, queued.rerun) == ("queued", False)
        assert queued.requested_at == queued.dispatched_at and queued.requested_at >= before
    assert len(dispatched) == 4
