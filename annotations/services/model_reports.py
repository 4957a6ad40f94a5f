"""Model reports: creating one, handing it to a worker, and the worker's claim, heartbeat,
stage saves and finish (the computing is ``workers.report_pipeline``; the definitions are in
docs/MODEL_REPORT.md).

Crash safety is the lease mechanism that precompute uses too (``services/leases.py``):

* a worker claims a report with a fresh token (queued -> running, or a running report whose
  heartbeat stopped) and only the holder of that token saves stages or finishes it;
* every finished stage is saved in ``state``, so the next worker goes on from there;
* the watchdog (celery beat) hands out again reports whose worker died or whose hand-over the
  broker refused; a report that kills its worker ``MMEVAL_CHUNK_MAX_ATTEMPTS`` times without
  finishing a stage fails, naming the stage.

Hand-over to the task queue happens after commit; with no broker (embedded mode) the report
runs in a background thread of this process, so a web request never computes.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotations.models import Dataset, ModelReport, PrecomputeJob, RegisteredModel
from annotations.services.background import task_run_in_background
from annotations.services.leases import (
    lease_claim,
    lease_dispatch_stamp,
    lease_finish,
    lease_heartbeat,
    lease_release,
    lease_stale_reset,
    lease_update,
)

logger = logging.getLogger(__name__)

Status = ModelReport.Status
OPEN = (Status.QUEUED, Status.RUNNING)
REPORT_TASK = "workers.tasks.model_report_task"
INLINE_TASK = "workers.tasks.model_report_inline_task"  # embedded mode: in this process
#: The largest slices document a researcher may send (characters of its JSON).
SLICES_MAX_CHARS = 20_000


class ModelReportError(Exception):
    """A report that cannot be created or started. ``field`` names the bad input, when one is."""

    def __init__(self, message: str, *, field: str = ""):
        self.field = field
        super().__init__(message)


# --------------------------------------------------------------------------- checking


def model_report_options_check(*, options: Any) -> dict[str, Any]:
    """The options as stored (defaults filled in); raises :class:`ModelReportError` naming the
    option."""
    from workers.engine.report.options import ReportOptions  # no torch: safe in the web process

    if options in (None, ""):
        options = {}
    if not isinstance(options, dict):
        raise ModelReportError(
            f"options must be a mapping of option names to values, got {type(options).__name__}", field="options"
        )
    try:
        return ReportOptions.from_json(options).to_json()
    except (TypeError, ValueError) as exc:
        message = str(exc)
        field = message.split(":", 1)[0] if message.startswith("options.") else "options"
        raise ModelReportError(message, field=field) from None


def model_report_slices_check(*, slices: Any, model: RegisteredModel) -> dict[str, Any]:
    """The slices document as stored, after checking every expression against the fields a
    report of ``model`` offers; raises :class:`ModelReportError` naming the slice or field and
    the column."""
    import json

    from workers.engine.report.slices import SliceError, slice_fields_for, slices_parse

    if slices in (None, "", {}):
        return {}
    if len(json.dumps(slices, default=str)) > SLICES_MAX_CHARS:
        raise ModelReportError(f"the slices file is longer than {SLICES_MAX_CHARS:,} characters", field="slices")
    try:
        parsed = slices_parse(slices, fields=slice_fields_for(modalities=model.modalities))
    except SliceError as exc:
        raise ModelReportError(str(exc), field=exc.where) from None
    return parsed.to_json()


def model_report_slices_load(*, text: str) -> Any:
    """A slices file's text (YAML or JSON) as data; raises :class:`ModelReportError` with the
    parser's line and column."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ModelReportError(f"the slices file is not valid YAML: {exc}", field="slices") from None


# --------------------------------------------------------------------------- creating and starting


def model_report_create(
    *,
    owner,
    model: RegisteredModel,
    dataset: Dataset,
    options: Any = None,
    slices: Any = None,
    train_dataset: Dataset | None = None,
    runner: str = PrecomputeJob.Runner.WORKERS,
) -> ModelReport:
    """A queued report of ``model`` on ``dataset``, after checking everything it will need; or
    the open report of the same request (a second click reuses it). Nothing is handed to a
    worker: :func:`model_report_start` does that, the command line runs it itself."""
    if (
        model.owner_id != owner.pk
        or dataset.owner_id != owner.pk
        or (train_dataset is not None and train_dataset.owner_id != owner.pk)
    ):
        raise ModelReportError("a report can only use your own model and datasets", field="model")
    missing = sorted(set(model.modalities) - set(dataset.modalities))
    if missing:
        raise ModelReportError(
            f"model '{model.name}' needs modalities {missing} that dataset '{dataset.name}' lacks", field="dataset"
        )
    if not dataset.items.exists():
        raise ModelReportError(f"dataset '{dataset.name}' has no items", field="dataset")
    stored_options = model_report_options_check(options=options)
    pair = stored_options.get("pair")
    if pair and any(name not in model.modalities for name in pair):
        raise ModelReportError(
            f"options.pair: model '{model.name}' has the modalities {model.modalities}", field="options.pair"
        )
    stored_slices = model_report_slices_check(slices=slices, model=model)
    fields = dict(
        owner=owner,
        model=model,
        dataset=dataset,
        train_dataset=train_dataset,
        options=stored_options,
        slices=stored_slices,
        runner=runner,
        queue=settings.CELERY_GPU_QUEUE,
    )
    with transaction.atomic():
        open_report = _open_report(owner=owner, model=model, dataset=dataset)
        if open_report is not None:
            return _reuse(open_report, fields)
        try:
            with transaction.atomic():
                return ModelReport.objects.create(**fields)
        except IntegrityError:  # a concurrent click created it first
            return _reuse(_open_report(owner=owner, model=model, dataset=dataset), fields)


def _open_report(*, owner, model: RegisteredModel, dataset: Dataset) -> ModelReport | None:
    return ModelReport.objects.filter(owner=owner, model=model, dataset=dataset, status__in=OPEN).first()


def _reuse(report: ModelReport, fields: dict[str, Any]) -> ModelReport:
    same = (
        report.options == fields["options"]
        and report.slices == fields["slices"]
        and report.train_dataset_id == (fields["train_dataset"].pk if fields["train_dataset"] else None)
    )
    if not same:
        raise ModelReportError(
            f"a report of '{report.model.name}' on '{report.dataset.name}' with other options is "
            f"still {report.status} (report {report.pk}); wait for it to finish",
            field="model",
        )
    if report.runner != fields["runner"]:
        ModelReport.objects.filter(pk=report.pk).update(runner=fields["runner"])
        report.runner = fields["runner"]
    return report


def model_report_start(*, report: ModelReport) -> ModelReport:
    """Hand the report to the workers after commit, or (no broker: the embedded default) run it
    in a background thread of this process. A report that has finished is left alone."""
    if report.status not in OPEN:
        return report
    embedded = settings.CELERY_TASK_ALWAYS_EAGER
    runner = PrecomputeJob.Runner.INLINE if embedded else PrecomputeJob.Runner.WORKERS
    if report.runner != runner:
        ModelReport.objects.filter(pk=report.pk).update(runner=runner)
        report.runner = runner
    if embedded:
        transaction.on_commit(
            lambda: task_run_in_background(
                task_name=INLINE_TASK, args=(report.pk,), thread_name=f"model-report-{report.pk}"
            )
        )
    else:
        transaction.on_commit(lambda: model_report_dispatch(report=report))
    return report


def model_report_dispatch(*, report: ModelReport) -> bool:
    """Publish the report's task on its queue. Never raises: a broker that refuses or hangs is
    recorded as ``dispatch_error`` and the watchdog tries again."""
    if report.runner != PrecomputeJob.Runner.WORKERS:
        return True
    from mmeval.celery import app

    try:
        # By name: the web process never imports the workers' code (torch and the engine).
        app.send_task(REPORT_TASK, args=(report.pk,), queue=report.queue or settings.CELERY_GPU_QUEUE)
    except Exception as exc:  # kombu/redis raise many types; every one means "not handed over"
        message = (
            f"The task queue did not accept the report ({exc.__class__.__name__}: {exc}). Nothing is lost: "
            "it is handed over again automatically once the queue answers."
        )
        logger.warning("model report %s not dispatched: %s", report.pk, exc)
        ModelReport.objects.filter(pk=report.pk).update(dispatch_error=message)
        report.dispatch_error = message
        return False
    lease_dispatch_stamp(model=ModelReport, pks=[report.pk], dispatch_error="")
    report.dispatch_error = ""
    return True


# --------------------------------------------------------------------------- the worker's side


def model_report_claim(*, report_id: int, worker: str) -> ModelReport | None:
    """Take a report for computing: a queued one, or a running one whose heartbeat stopped.
    Returns it with a fresh ``claim``, or None when it is finished or held by a live worker. A
    report whose workers died ``MMEVAL_CHUNK_MAX_ATTEMPTS`` times without finishing a stage
    fails, naming the stage (the lease rules: ``services/leases.py``)."""

    def give_up(report: ModelReport, now) -> None:
        stage = (report.progress or {}).get("stage") or "the first stage"
        error = (
            f"The worker stopped {report.attempts} times while computing {stage} (killed, or out of "
            "memory?). Lower the report's options (emap_max_items, noise_levels, batch_size) or give the "
            "worker more memory."
        )
        ModelReport.objects.filter(pk=report.pk).update(status=Status.FAILED, error=error, finished_at=now, claim="")

    return lease_claim(
        model=ModelReport,
        pk=report_id,
        worker=worker,
        related=("model", "dataset", "train_dataset"),
        on_exhausted=give_up,
    )


def model_report_heartbeat(*, report_id: int, claim: str, progress: dict[str, Any] | None = None) -> bool:
    """Mark the report alive (and record its progress). False when the claim was lost."""
    fields = {} if progress is None else {"progress": progress}
    return lease_heartbeat(model=ModelReport, pk=report_id, claim=claim, **fields)


def model_report_stage_save(*, report: ModelReport, state: dict[str, Any], progress: dict[str, Any]) -> bool:
    """Keep the stages finished so far; a finished stage also resets the attempts (the report
    is moving). False when the claim was lost (another worker took over)."""
    return lease_update(row=report, state=state, progress=progress, attempts=0)


def model_report_finish(*, report: ModelReport, result: dict[str, Any] | None = None, error: str = "") -> bool:
    """Close a claimed report: done with its ``result``, or failed with ``error``. A worker
    whose claim was taken over changes nothing."""
    return lease_finish(
        row=report,
        status=Status.FAILED if error else Status.DONE,
        result=None if error else result,
        error=error,
        progress={**(report.progress or {}), "stage": "", "finished": True},
    )


def model_report_release(*, report: ModelReport, dispatch: bool = False) -> None:
    """Give a claimed report back unfinished (queued again): a transient error the task
    retries, or a task that reached its time limit after finishing stages (``dispatch``: a
    fresh task takes it over after commit)."""
    if lease_release(row=report) and dispatch:
        transaction.on_commit(lambda: model_report_dispatch(report=report))


def model_report_take_over(*, report_id: int) -> None:
    """This process runs the report itself (the command line): no worker is handed it, and a
    report whose worker died is queued again for this process to claim."""
    ModelReport.objects.filter(pk=report_id).update(runner=PrecomputeJob.Runner.INLINE)
    lease_stale_reset(rows=ModelReport.objects.filter(pk=report_id), now=timezone.now())


def model_report_watchdog(*, now=None) -> dict[str, int]:
    """Run by celery beat: hand reports of dead workers, and reports the queue refused or lost,
    to the workers again. Returns counts of what it did."""
    now = now or timezone.now()
    quiet = now - timedelta(seconds=settings.MMEVAL_REDISPATCH_SECONDS)
    counts = {"stalled": 0, "redispatched": 0}
    workers_reports = ModelReport.objects.filter(runner=PrecomputeJob.Runner.WORKERS)
    for report_id in lease_stale_reset(rows=workers_reports, now=now):
        counts["stalled"] += 1
        model_report_dispatch(report=ModelReport.objects.get(pk=report_id))
    lost = workers_reports.filter(status=Status.QUEUED).filter(
        Q(dispatch_error__gt="") | Q(dispatched_at__isnull=True, created_at__lt=quiet) | Q(dispatched_at__lt=quiet)
    )
    for report in lost:
        counts["redispatched"] += int(model_report_dispatch(report=report))
    return counts


def model_report_delete(*, report: ModelReport) -> None:
    """Delete a finished (or failed) report; a queued or running one is left to finish."""
    if report.status in OPEN:
        raise ModelReportError(f"report {report.pk} is still {report.status}; delete it once it has finished")
    report.delete()
