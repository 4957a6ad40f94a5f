"""Model reports: computing one on a worker or in this process.

Orchestration and engine calls only: the report is read through
``annotations.selectors.model_reports``, claimed, saved and finished through
``annotations.services.model_reports``, and computed by ``workers.engine.report.quantify``.

:func:`model_report_run_job` claims the report, beats its heartbeat from a side thread, runs the
engine stage by stage (saving each finished stage, so a successor goes on from there) and
finishes it. The Celery task calls it; :func:`model_report_run_inline` calls it for the command
line and the embedded mode's background thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from annotations.models import ModelReport
from annotations.selectors.model_reports import dataset_item_lines, dataset_raw_items, model_report_progress
from annotations.services.model_reports import (
    model_report_claim,
    model_report_finish,
    model_report_heartbeat,
    model_report_release,
    model_report_stage_save,
    model_report_take_over,
)
from workers.adapters import registered_model_adapter
from workers.heartbeat import heartbeat_kept
from workers.pipeline import TRANSIENT_ERRORS  # JSON columns reject NaN
from workers.pipeline import _finite_json as _finite

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
_PROGRESS_EVERY = 1.0  # seconds between progress writes from the computing thread


class _ClaimLost(Exception):
    """Another worker took the report over (this one was thought dead): stop quietly."""


def model_report_run_job(*, report_id: int, worker: str, on_progress: Progress | None = None) -> str:
    """Claim, compute and finish one report. Returns what happened: "done", "failed",
    "continued" (the task's time limit came after some stages finished: a fresh task goes on),
    "lost" (another worker took it over) or "skipped" (finished, or held by a live worker).
    Transient infrastructure errors give the report back and propagate, so the task retries."""
    report = model_report_claim(report_id=report_id, worker=worker)
    if report is None:
        return "skipped"
    finished_here: list[str] = []
    progress: dict[str, Any] = {"stage": "", "done": 0, "total": 0}  # the computing thread's latest

    def beat() -> None:
        model_report_heartbeat(report_id=report.pk, claim=report.claim, progress=dict(progress))

    with heartbeat_kept(beat=beat, name=f"report-heartbeat-{report.pk}"):
        try:
            result = _compute(report, progress, finished_here, on_progress)
        except _ClaimLost:
            return "lost"
        except SoftTimeLimitExceeded:
            if finished_here:
                model_report_release(report=report, dispatch=True)
                return "continued"
            stage = progress.get("stage") or "a stage"
            model_report_finish(
                report=report,
                error=(
                    f"The report's {stage} stage alone takes longer than the task time limit "
                    f"({settings.MMEVAL_TASK_SOFT_TIME_LIMIT} s). Lower its options (emap_max_items, noise_levels, "
                    "noise_samples, permutations, pid_resamples) or raise MMEVAL_TASK_SOFT_TIME_LIMIT."
                ),
            )
            return "failed"
        except TRANSIENT_ERRORS:
            model_report_release(report=report)
            raise
        except Exception:  # the adapter, the options or the items: the researcher reads why
            model_report_finish(report=report, error=traceback.format_exc())
            return "failed"
    return "done" if model_report_finish(report=report, result=_finite(result)) else "lost"


def _compute(
    report: ModelReport, latest: dict[str, Any], finished_here: list[str], on_progress: Progress | None
) -> dict:
    from workers.engine.report.options import ReportOptions
    from workers.engine.report.quantify import model_report_run, report_slice_fields
    from workers.engine.report.slices import slices_parse

    adapter = registered_model_adapter(model=report.model)
    options = ReportOptions.from_json(report.options)
    slices = slices_parse(report.slices, fields=report_slice_fields(adapter.modalities)) if report.slices else None
    items = dataset_raw_items(dataset=report.dataset)
    train_items = dataset_raw_items(dataset=report.train_dataset) if report.train_dataset_id else None
    last_write = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        latest.update(stage=stage, done=done, total=total)
        now = time.monotonic()
        if now - last_write[0] >= _PROGRESS_EVERY or done == total:
            last_write[0] = now
            if not model_report_heartbeat(report_id=report.pk, claim=report.claim, progress=dict(latest)):
                raise _ClaimLost
        if on_progress is not None:
            on_progress(stage, done, total)

    def on_stage(stage: str, state: dict) -> None:
        finished_here.append(stage)
        report.state = _finite(state)
        if not model_report_stage_save(report=report, state=report.state, progress=dict(latest)):
            raise _ClaimLost

    return model_report_run(
        adapter,
        items,
        options=options,
        slices=slices,
        state=dict(report.state or {}),
        train_items=train_items,
        progress=progress,
        on_stage=on_stage,
        item_lines=dataset_item_lines(dataset=report.dataset),
    )


def model_report_run_inline(*, report_id: int, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run (or go on with) a report in this process: the command line, the embedded mode.
    Returns its progress (status, error...)."""
    worker = f"inline@{socket.gethostname()}:{os.getpid()}/{threading.current_thread().name}"
    model_report_take_over(report_id=report_id)
    model_report_run_job(report_id=report_id, worker=worker, on_progress=on_progress)
    return model_report_progress(report=ModelReport.objects.get(pk=report_id))
