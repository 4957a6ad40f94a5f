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
   view: login, the snapshot, the progress counts, the template), after one warm-up request,
   twice: ``checked`` with every request computing the data version (debounce 0) and ``served``
   with the default debounce (the first request of each period checks it); and count the calls
   of the analysis entry point made meanwhile (must be 0).
4. **Roll back**.
"""

from __future__ import annotations

import os
import pickle
import statistics
import threading
import time
from typing import Any

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings, setup_test_environment
from django.urls import reverse
from django.utils import timezone

from annotations.models import DashboardSnapshot, Response
from annotations.services import analysis, dashboard
from benchmarks.export import generate_study

__all__ = ["run_dashboard_benchmark"]


class _Rollback(Exception):
    pass


def run_dashboard_benchmark(
    *,
    rows: int,
    items_per_participant: int,
    requests: int,
    resamples: int,
    sample_rows: int,
    seed: int,
    profile: bool = False,
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
            report.update(_time_requests(study, requests=requests, profile=profile))
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
    data["svgs"] = dashboard.dashboard_svgs(study=study, data=data)
    snapshot_id = dashboard._snapshot_id(study.pk)
    DashboardSnapshot.objects.filter(pk=snapshot_id).update(
        status=DashboardSnapshot.Status.IDLE,
        result=pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL),
        data_version=dashboard._version_hash(study),
        n_responses=Response.objects.filter(participant__study=study).count(),
        computed_at=timezone.now(),
        computations=1,
    )


def _time_requests(study, *, requests: int, profile: bool = False) -> dict[str, Any]:
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
        if profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            client.get(url)
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(
                os.environ.get("MMEVAL_PROFILE_SORT", "cumulative")
            ).print_stats(25)
            print(text.getvalue())
        timed = {}
        for name, debounce in (("checked", 0), ("served", None)):
            # "checked": every request computes the data version (debounce 0); "served": the
            # default debounce, so the version is checked by the first request of each period.
            with override_settings(**({"MMEVAL_DASHBOARD_DEBOUNCE_SECONDS": debounce} if debounce == 0 else {})):
                wall, cpu = [], []
                for _ in range(requests):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    response = client.get(url)
                    wall.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - cpu_started) * 1000)
                    assert response.status_code == 200
            timed[name] = (sorted(wall), sorted(cpu))
        # Where a served request's wall time goes besides Python: its SQL, query by query.
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        sql_ms = sorted(((float(q["time"]) * 1000, q["sql"]) for q in queries.captured_queries), reverse=True)
    finally:
        analysis.study_dashboard_compute = compute
    out: dict[str, Any] = {"requests": requests}
    for name, (wall, cpu) in timed.items():
        out[f"{name}_request_ms_median"] = round(statistics.median(wall), 1)
        out[f"{name}_request_ms_p90"] = round(wall[int(0.9 * (len(wall) - 1))], 1)
        out[f"{name}_request_python_cpu_ms_median"] = round(statistics.median(cpu), 1)
    out["served_request_queries"] = len(sql_ms)
    out["served_request_sql_ms"] = round(sum(ms for ms, _ in sql_ms), 1)
    out["served_request_slowest_query_ms"] = round(sql_ms[0][0], 1) if sql_ms else 0
    out["served_request_slowest_query"] = sql_ms[0][1][:120] if sql_ms else ""
    out["analysis_calls_during_requests"] = len(calls)
    out["page_kib"] = round(len(warm.content) / 1024, 1)
    return out
