"""Benchmark the dashboard request on a large synthetic study (PostgreSQL only).

    python manage.py bench_dashboard --rows 100000

1. **Generate** (not timed): the export benchmark's throw-away study (``benchmarks.export.
   generate_study``: 4 arms, 1,000 items, ``--rows`` responses), inside one transaction.
2. **Store** a result as the background task would (``_store_result``): the analysis of all
   the responses takes minutes on the development machine, so the report comes from a sample
   study of ``--sample-rows`` responses (``--resamples`` resamples and permutations) and the
   participants table from the big study; the snapshot carries the big study's data version,
   so the request takes it as current. The request does the same work either way.
3. **Time** ``--requests`` GETs of the dashboard page through Django's test client (the whole
   view: login, the data version, the snapshot, the template), after one warm-up request, and
   count the calls of the analysis entry point made meanwhile (must be 0).
4. **Roll back**.
"""

from __future__ import annotations

import pickle
import statistics
import threading
import time
from typing import Any

from django.db import transaction
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse
from django.utils import timezone

from annotations.models import DashboardSnapshot, Response
from annotations.services import analysis, dashboard
from benchmarks.export import generate_study

__all__ = ["run_dashboard_benchmark"]


class _Rollback(Exception):
    pass


def run_dashboard_benchmark(
    *, rows: int, items_per_participant: int, requests: int, resamples: int, sample_rows: int, seed: int
) -> dict[str, Any]:
    """See the module docstring. Returns the report (seconds, milliseconds per request)."""
    setup_test_environment()  # the test client's host name is allowed
    report: dict[str, Any] = {}
    try:
        with transaction.atomic():
            study = generate_study(rows=rows, per_participant=items_per_participant, seed=seed, report=report)
            report["responses"] = Response.objects.filter(participant__study=study).count()
            started = time.perf_counter()
            _store_result(study, sample_rows=sample_rows, resamples=resamples, seed=seed)
            report["background_result_seconds"] = round(time.perf_counter() - started, 1)
            report.update(_time_requests(study, requests=requests))
            raise _Rollback
    except _Rollback:
        pass
    return report


def _store_result(study, *, sample_rows: int, resamples: int, seed: int) -> None:
    """Store a dashboard result for ``study`` as the background task would, without computing
    the analysis of all its responses (minutes on this machine): the report comes from a
    sample study of ``sample_rows`` responses of the same design, the participants table from
    ``study`` itself, and the snapshot is stamped with ``study``'s data version and response
    count, so the dashboard request takes it as current. What the request does is the same; the
    stored report is as large as a real one (one block per arm and section)."""
    from annotations.selectors.analysis import study_participants_table

    sample = generate_study(rows=sample_rows, per_participant=10, seed=seed + 1, report={})
    saved = (analysis.DEFAULT_RESAMPLES, analysis.DEFAULT_PERMUTATIONS, analysis.POWER_SIMULATIONS)
    analysis.DEFAULT_RESAMPLES = analysis.DEFAULT_PERMUTATIONS = resamples
    analysis.POWER_SIMULATIONS = 10
    try:
        data = analysis.study_dashboard_compute(study=sample)
    finally:
        analysis.DEFAULT_RESAMPLES, analysis.DEFAULT_PERMUTATIONS, analysis.POWER_SIMULATIONS = saved
    data["participants"] = study_participants_table(study=study)
    snapshot_id = dashboard._snapshot_id(study.pk)
    DashboardSnapshot.objects.filter(pk=snapshot_id).update(
        status=DashboardSnapshot.Status.IDLE,
        result=pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL),
        data_version=dashboard._version_hash(study),
        n_responses=Response.objects.filter(participant__study=study).count(),
        computed_at=timezone.now(),
        computations=1,
    )


def _time_requests(study, *, requests: int) -> dict[str, Any]:
    calls: list[str] = []
    compute = analysis.study_dashboard_compute

    def counted(*, study):
        calls.append(threading.current_thread().name)
        return compute(study=study)

    client = Client()
    client.force_login(study.owner)
    url = reverse("study-dashboard", args=[study.pk])
    analysis.study_dashboard_compute = counted
    try:
        warm = client.get(url)
        if warm.status_code != 200 or b"Analysis as of" not in warm.content:
            raise RuntimeError(f"the dashboard did not show the stored analysis (HTTP {warm.status_code})")
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
    finally:
        analysis.study_dashboard_compute = compute
    times.sort()
    return {
        "requests": requests,
        "request_ms_median": round(statistics.median(times), 1),
        "request_ms_p90": round(times[int(0.9 * (len(times) - 1))], 1),
        "request_ms_max": round(times[-1], 1),
        "analysis_calls_during_requests": len(calls),
        "page_kib": round(len(warm.content) / 1024, 1),
    }
