"""The dashboard's analysis, computed in the background while a study fills (issue 22).

The analysis behind the dashboard (bootstraps, permutations, the mixed model, the power card:
``services.analysis.study_dashboard_compute``) takes seconds at thousands of responses, and
during a live study every response changes it. So the dashboard request never computes it: it
shows the latest stored result (:class:`annotations.models.DashboardSnapshot`) with its age and
the responses it counts, and says "updating" while a newer one is on its way.

* **Asking for a refresh** (:func:`dashboard_refresh_request`): after each stored response
  (``services.participants``, on commit, :func:`dashboard_response_stored`: only once the
  dashboard was opened) and whenever a dashboard request finds the stored
  result older than the data (``study_data_version``). An idle snapshot becomes ``queued`` and
  its task (``workers.tasks.dashboard_refresh_task``, sent by name) is published with a
  countdown of ``MMEVAL_DASHBOARD_DEBOUNCE_SECONDS``; a queued one is left alone (its task will
  see every response until it starts); a running one is marked ``rerun``. A burst of responses
  thus costs one computation, plus at most one for what came in while it ran.
* **Computing** (:func:`dashboard_refresh_run`): the task claims the snapshot with the one lease
  mechanism (``services.leases``), records the data version and response count first (so data
  that arrives meanwhile reads as newer), computes, stores the result and finishes; if ``rerun``
  was set meanwhile it queues itself again.
* **Embedded mode** (no broker): the work runs in a daemon thread of the web process
  (``services.background``), with no countdown; ``rerun`` still coalesces a burst.
* **Lost work** (a broker that refused the task, a worker that died): a request that finds a
  snapshot queued or running with no sign of life for ``MMEVAL_CHUNK_STALE_SECONDS`` publishes
  it again; the claim takes a stale lease over.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotations.models import DashboardSnapshot, Response, Study
from annotations.selectors.analysis import study_chance_level, study_data_version
from annotations.services.background import task_run_in_background
from annotations.services.leases import lease_claim, lease_finish, lease_heartbeat, lease_stale_before

logger = logging.getLogger(__name__)

REFRESH_TASK = "workers.tasks.dashboard_refresh_task"
_IDLE = (DashboardSnapshot.Status.IDLE, DashboardSnapshot.Status.FAILED)
_BUSY = (DashboardSnapshot.Status.QUEUED, DashboardSnapshot.Status.RUNNING)


def _version_hash(study: Study) -> str:
    return hashlib.sha256(repr(study_data_version(study=study)).encode("utf-8")).hexdigest()


def _snapshot_id(study_id: int) -> int:
    found = DashboardSnapshot.objects.filter(study_id=study_id).values_list("pk", flat=True).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return DashboardSnapshot.objects.create(study_id=study_id).pk
    except IntegrityError:  # created by a concurrent request
        return DashboardSnapshot.objects.get(study_id=study_id).pk


def _dispatch(*, study_id: int) -> None:
    """Publish the refresh task after the debounce (or run it in a thread, embedded). Never
    raises: a refused publish leaves the snapshot queued, and a later request publishes again
    once it looks lost."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        task_run_in_background(task_name=REFRESH_TASK, args=(study_id,), thread_name=f"dashboard-{study_id}")
        return
    from mmeval.celery import app

    try:  # by name: the web process never imports the workers' code
        app.send_task(REFRESH_TASK, args=(study_id,), countdown=settings.MMEVAL_DASHBOARD_DEBOUNCE_SECONDS)
    except Exception as exc:  # kombu/redis raise many types; every one means "not handed over"
        logger.warning("dashboard refresh of study %s not dispatched: %s", study_id, exc)


def dashboard_refresh_request(*, study_id: int) -> None:
    """Ask for a newer dashboard of study ``study_id`` (module docstring): publish its task
    unless one is queued already; mark a running one to run again. Cheap (one or two
    single-row updates); call it after commit."""
    pk = _snapshot_id(study_id)
    now = timezone.now()
    queued = DashboardSnapshot.objects.filter(pk=pk, status__in=_IDLE).update(
        status=DashboardSnapshot.Status.QUEUED, requested_at=now, dispatched_at=now, error=""
    )
    if queued:
        _dispatch(study_id=study_id)
        return
    DashboardSnapshot.objects.filter(pk=pk, status=DashboardSnapshot.Status.RUNNING, rerun=False).update(rerun=True)
    _redispatch_if_lost(pk=pk, study_id=study_id, now=now)


def dashboard_response_stored(*, study_id: int) -> None:
    """A participant's answer was stored (after commit): the dashboard's refresh in one
    single-row update, so the answer's request stays cheap. An idle snapshot turns queued, a
    running one is marked ``rerun``; either way the task is published (for a running one an
    extra message at most once per computation: it finds the lease held, or does the rerun
    early and the rerun's own message finds nothing). A study whose dashboard was never opened
    has no snapshot, and nothing is computed for it until it is."""
    with connection.cursor() as cursor:
        cursor.execute(_response_stored_sql(), _response_stored_params(study_id=study_id, now=timezone.now()))
        changed = cursor.rowcount
    if changed:
        _dispatch(study_id=study_id)


# The update above, written out: built through the ORM (four CASE expressions) it cost 1.3 ms of
# CPU to compile, a sixth of the answer's request. Every SET expression reads the row as it was
# (Postgres and SQLite alike), so "running" below means "was running".
_RESPONSE_STORED_SQL = """
UPDATE {table} SET
    rerun = CASE WHEN {status} = %s THEN %s ELSE %s END,
    requested_at = CASE WHEN {status} = %s THEN {requested_at} ELSE %s END,
    dispatched_at = CASE WHEN {status} = %s THEN {dispatched_at} ELSE %s END,
    {status} = CASE WHEN {status} = %s THEN {status} ELSE %s END
WHERE {study} = %s AND ({status} IN (%s, %s) OR ({status} = %s AND {rerun} = %s))
"""


def _response_stored_sql() -> str:
    quote, fields = connection.ops.quote_name, DashboardSnapshot._meta
    return _RESPONSE_STORED_SQL.format(
        table=quote(fields.db_table),
        **{name: quote(fields.get_field(name).column) for name in ("status", "rerun", "requested_at", "dispatched_at")},
        study=quote(fields.get_field("study").column),
    )


def _response_stored_params(*, study_id: int, now: datetime) -> list:
    running, queued = DashboardSnapshot.Status.RUNNING.value, DashboardSnapshot.Status.QUEUED.value
    now = connection.ops.adapt_datetimefield_value(now)
    return [
        *(running, True, False),  # rerun: a running one runs again; a queued one starts afresh
        *(running, now),  # requested_at
        *(running, now),  # dispatched_at
        *(running, queued),  # status: idle or failed → queued
        study_id,
        *(status.value for status in _IDLE),
        *(running, False),
    ]


def _redispatch_if_lost(*, pk: int, study_id: int, now: datetime) -> None:
    stale = lease_stale_before(now=now)
    debounce = timedelta(seconds=settings.MMEVAL_DASHBOARD_DEBOUNCE_SECONDS)
    lost = Q(status=DashboardSnapshot.Status.QUEUED, requested_at__lt=stale - debounce) & (
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale - debounce)
    )
    lost |= Q(status=DashboardSnapshot.Status.RUNNING, heartbeat_at__lt=stale)
    if DashboardSnapshot.objects.filter(lost, pk=pk).update(requested_at=now, dispatched_at=now):
        _dispatch(study_id=study_id)


def dashboard_refresh_run(
    *,
    study_id: int,
    worker: str,
    keep_alive: Callable[[Callable[[], object]], AbstractContextManager] | None = None,
) -> str:
    """Compute and store the study's dashboard if its snapshot is queued (or its lease went
    stale). ``keep_alive(beat)``: a context manager that calls ``beat`` (the lease's heartbeat)
    while the analysis runs (the worker's ``workers.heartbeat.heartbeat_kept``). Returns ``"done"``, ``"queued again"`` (data moved meanwhile: its task is published
    again), ``"failed"`` or ``"skipped"`` (nothing to do, or another worker holds it)."""
    from annotations.services.analysis import study_dashboard_compute

    pk = DashboardSnapshot.objects.filter(study_id=study_id).values_list("pk", flat=True).first()
    if pk is None:
        return "skipped"

    def exhausted(row: DashboardSnapshot, now: datetime) -> None:
        DashboardSnapshot.objects.filter(pk=row.pk).update(
            status=DashboardSnapshot.Status.FAILED, error="gave up after repeated crashes", attempts=0
        )

    row = lease_claim(
        model=DashboardSnapshot,
        pk=pk,
        worker=worker,
        on_exhausted=exhausted,
        on_claimed=lambda held: DashboardSnapshot.objects.filter(pk=held.pk).update(rerun=False),
    )
    if row is None:
        return "skipped"
    study = Study.objects.get(pk=study_id)
    started = timezone.now()
    version = _version_hash(study)
    n_responses = Response.objects.filter(participant__study=study).exclude(participant__platform="preview").count()
    try:
        with keep_alive(lambda: dashboard_heartbeat(row=row)) if keep_alive else nullcontext():
            data = study_dashboard_compute(study=study)
            data["svgs"] = dashboard_svgs(study=study, data=data)
    except Exception as exc:
        logger.exception("dashboard of study %s failed", study_id)
        # The version it failed at: asked again only when the data moves, not on every page load.
        lease_finish(
            row=row,
            status=DashboardSnapshot.Status.FAILED,
            error=f"{exc.__class__.__name__}: {exc}",
            data_version=version,
            attempts=0,
        )
        return "failed"
    with transaction.atomic():
        held = DashboardSnapshot.objects.select_for_update().filter(pk=pk, claim=row.claim).first()
        if held is None or held.status != DashboardSnapshot.Status.RUNNING:
            return "skipped"  # taken over: the new holder stores its own
        again = held.rerun
        lease_finish(
            row=row,
            status=DashboardSnapshot.Status.QUEUED if again else DashboardSnapshot.Status.IDLE,
            result=pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL),
            data_version=version,
            n_responses=n_responses,
            computed_at=started,
            computations=held.computations + 1,
            requested_at=started if again else held.requested_at,
            rerun=False,
            attempts=0,
        )
        if again:
            transaction.on_commit(lambda: _dispatch(study_id=study_id))
    return "queued again" if again else "done"


def dashboard_svgs(*, study: Study, data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The dashboard's plots for each report section, drawn once with the result (matplotlib
    escapes every text it writes into the SVG): ``{section: {"accuracy", "calibration",
    "metrics"}}``; empty without a report."""
    from annotations.analysis.plots import accuracy_bar_svg, metric_accuracy_svg, reliability_plot_svg
    from annotations.services.analysis import SECTIONS

    report = data.get("report")
    if (
        report is None or "analysis" not in report
    ):  # the reliance, counterfactual, rationale, rating and preference cards draw no plot
        return {}
    baseline = report["study"]["baseline"]
    drawn = {}
    for section in SECTIONS:
        block = report["analysis"][section]
        correlation = (report.get("metrics_vs_human") or {}).get(section)
        # The per-item chance averaged over this section's answers; the study's when not computed.
        pooled_chance = ((block.get("chance") or {}).get("pooled") or {}).get("chance")
        drawn[section] = {
            "accuracy": accuracy_bar_svg(
                block["simulation_accuracy"],
                baseline=baseline,
                chance=pooled_chance if pooled_chance is not None else study_chance_level(study=study),
            )
            if baseline in block["simulation_accuracy"]
            else "",
            "calibration": reliability_plot_svg(block["calibration"]) if block.get("calibration") else "",
            "metrics": metric_accuracy_svg(
                data["points"][section], baseline=baseline, correlations=(correlation or {}).get("per_arm")
            ),
        }
    return drawn


def dashboard_heartbeat(*, row: DashboardSnapshot) -> bool:
    return lease_heartbeat(model=DashboardSnapshot, pk=row.pk, claim=row.claim)


def study_dashboard_latest(*, study: Study) -> dict[str, Any]:
    """What the dashboard request shows, without computing the analysis: ``data`` (the latest
    stored ``study_dashboard_compute`` result, or None before the first), ``computed_at``,
    ``age_seconds``, ``n_responses`` (counted when it was computed), ``updating`` (a newer one is
    on its way: the data moved, or a refresh is queued or running) and ``error`` (why the last
    refresh failed). Asks for a refresh when the stored result is older than the data (checked
    at most once per ``MMEVAL_DASHBOARD_DEBOUNCE_SECONDS`` per study and process cache)."""
    pk = _snapshot_id(study.pk)
    state = DashboardSnapshot.objects.filter(pk=pk).values("status", "data_version").get()
    current = None
    # The data version is six aggregates over the study's rows: checked at most once per
    # debounce period (responses mark the snapshot queued themselves; this catches the rest).
    if state["status"] not in _BUSY and cache.add(
        f"mmeval:dashboard-checked:{study.pk}", 1, timeout=settings.MMEVAL_DASHBOARD_DEBOUNCE_SECONDS
    ):
        current = _version_hash(study)
        if state["data_version"] != current:
            dashboard_refresh_request(study_id=study.pk)
    elif state["status"] in _BUSY:
        _redispatch_if_lost(pk=pk, study_id=study.pk, now=timezone.now())
    snapshot = DashboardSnapshot.objects.get(pk=pk)
    data = pickle.loads(bytes(snapshot.result)) if snapshot.result else None  # our own worker's bytes
    now = timezone.now()
    return {
        "data": data,
        "computed_at": snapshot.computed_at,
        "age_seconds": (now - snapshot.computed_at).total_seconds() if snapshot.computed_at else None,
        "n_responses": snapshot.n_responses if snapshot.computed_at else None,
        "updating": snapshot.status in _BUSY or (current is not None and snapshot.data_version != current),
        "error": snapshot.error if snapshot.status == DashboardSnapshot.Status.FAILED else "",
    }


def study_dashboard_state(*, study: Study) -> dict[str, Any]:
    """The background analysis's state for the dashboard's poll, from the snapshot row alone
    (no data version, no result): ``computed_at`` (ISO text or None), ``n_responses`` and
    ``updating`` (a refresh is queued or running)."""
    found = DashboardSnapshot.objects.filter(study=study).values("computed_at", "n_responses", "status").first()
    if found is None:
        return {"computed_at": None, "n_responses": None, "updating": False}
    return {
        "computed_at": found["computed_at"].isoformat() if found["computed_at"] else None,
        "n_responses": found["n_responses"] if found["computed_at"] else None,
        "updating": found["status"] in _BUSY,
    }
