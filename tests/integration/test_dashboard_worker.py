"""The dashboard's background analysis on a real Celery worker (issue 22): a participant's
answers lead to a recomputed result, a burst of answers to far fewer computations than answers,
and the dashboard request itself computes nothing."""

from __future__ import annotations

import threading
import time

import pytest

from annotations.models import DashboardSnapshot, Response
from annotations.services import analysis
from tests.builders.studies import answer_all, build_study, enter_and_start

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.api.urls")]


def _answers(study) -> int:
    return Response.objects.filter(participant__study=study).exclude(participant__platform="preview").count()


def wait_for_result(study, *, n_responses: int, timeout: float = 300) -> DashboardSnapshot:
    """The snapshot once a result counting ``n_responses`` is stored and nothing is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = DashboardSnapshot.objects.filter(study=study).first()
        if found is not None and found.n_responses == n_responses and found.status == "idle" and found.computed_at:
            return found
        time.sleep(0.5)
    found = DashboardSnapshot.objects.filter(study=study).values().first()
    pytest.fail(f"no result counting {n_responses} responses within {timeout} s: {found}")


def test_answers_lead_to_a_recomputed_dashboard_debounced(celery_worker_process, alice, tmp_path, settings, client):
    settings.MMEVAL_DASHBOARD_DEBOUNCE_SECONDS = 5  # the countdown this process publishes with
    study = build_study(alice, tmp_path, n_items=8, items_per_participant=4, raters_per_item=8, n_candidates=0)

    client.force_login(alice)
    assert 'id="analysis-pending"' in client.get(f"/studies/{study.pk}/dashboard/").content.decode("utf-8")
    answer_all(enter_and_start(study, "P0"))  # once the dashboard was opened, each answer asks for a refresh
    first = wait_for_result(study, n_responses=_answers(study))
    assert first.computations >= 1 and first.result

    burst = []
    for k in range(1, 7):
        burst += answer_all(enter_and_start(study, f"P{k}"))
    total = _answers(study)
    assert len(burst) >= 20 and total == first.n_responses + len(burst)
    after = wait_for_result(study, n_responses=total)
    spent = after.computations - first.computations
    assert 1 <= spent <= len(burst) // 4, f"{spent} computations for a burst of {len(burst)} answers"

    calls: list[str] = []
    compute = analysis.study_dashboard_compute

    def counted(*, study):
        calls.append(threading.current_thread().name)
        return compute(study=study)

    analysis.study_dashboard_compute = counted  # this process only; the worker computes
    try:
        html = client.get(f"/studies/{study.pk}/dashboard/").content.decode("utf-8")
    finally:
        analysis.study_dashboard_compute = compute
    assert calls == []
    assert "Analysis as of" in html and f'<b id="analysis-responses">{total}</b> responses' in html
    assert 'id="analysis-updating" hidden' in html
