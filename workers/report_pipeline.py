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
from django.db import connections

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
from workers.engine.registry import load_adapter
from workers.pipeline import TRANSIENT_ERRORS  # JSON columns reject NaN
from workers.pipeline import _finite_json as _finite

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
_PROGRESS_EVERY = 1.0  # seconds between progress writes from the computing thread


class _ClaimLost(Exception):
    """Another worker took the report over (this one was thought dead): stop quietly."""


class _Beat:
    """Beats the report's heartbeat from a side thread (with the latest progress) while the
    engine computes, so a long stage is not mistaken for a dead worker."""

    def __init__(self, report: ModelReport) -> None:
        self.report = report
        self.progress: dict[str, Any] = {"stage": "", "done": 0, "total": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"report-heartbeat-{report.pk}", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.wait(settings.MMEVAL_CHUNK_HEARTBEAT_SECONDS):
                try:
                    model_report_heartbeat(
                        report_id=self.report.pk, claim=self.report.claim, progress=dict(self.progress)
                    )
                except Exception as exc:  # the database is away: the watchdog decides later
                    logger.warning("heartbeat of model report %s failed: %s", self.report.pk, exc)
        finally:
            connections.close_all()  # this thread's connections only

    def __enter__(self) -> _Beat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def model_report_run_job(*, report_id: int, worker: str, on_progress: Progress | None = None) -> str:
    """Claim, compute and finish one report. Returns what happened: "done", "failed",
    "continued" (the task's time limit came after some stages finished: a fresh task goes on),
    "lost" (another worker took it over) or "skipped" (finished, or held by a live worker).
    Transient infrastructure errors give the report back and propagate, so the task retries."""
    report = model_report_claim(report_id=report_id, worker=worker)
    if report is None:
        return "skipped"
    finished_here: list[str] = []
    with _Beat(report) as beat:
        try:
            result = _compute(report, beat, finished_here, on_progress)
        except _ClaimLost:
            return "lost"
        except SoftTimeLimitExceeded:
            if finished_here:
                model_report_release(report=report, dispatch=True)
                return "continued"
            stage = beat.progress.get("stage") or "a stage"
            model_report_finish(
                report=report,
                error=(
                    f"The report's {stage} stage alone takes longer than the task time limit "
                    f"({settings.MMEVAL_TASK_SOFT_TIME_LIMIT} s). Lower its options (emap_max_items, noise_levels, "
                    "noise_samples, permutations) or raise MMEVAL_TASK_SOFT_TIME_LIMIT."
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


def _compute(report: ModelReport, beat: _Beat, finished_here: list[str], on_progress: Progress | None) -> dict:
    from workers.engine.report.options import ReportOptions
    from workers.engine.report.quantify import model_report_run, report_slice_fields
    from workers.engine.report.slices import slices_parse

    adapter = load_adapter(report.model.adapter_path, device=settings.MMEVAL_DEVICE)
    options = ReportOptions.from_json(report.options)
    slices = slices_parse(report.slices, fields=report_slice_fields(adapter.modalities)) if report.slices else None
    items = dataset_raw_items(dataset=report.dataset)
    train_items = dataset_raw_items(dataset=report.train_dataset) if report.train_dataset_id else None
    last_write = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        beat.progress = {"stage": stage, "done": done, "total": total}
        now = time.monotonic()
        if now - last_write[0] >= _PROGRESS_EVERY or done == total:
            last_write[0] = now
            if not model_report_heartbeat(report_id=report.pk, claim=report.claim, progress=dict(beat.progress)):
                raise _ClaimLost
        if on_progress is not None:
            on_progress(stage, done, total)

    def on_stage(stage: str, state: dict) -> None:
        finished_here.append(stage)
        report.state = _finite(state)
        if not model_report_stage_save(report=report, state=report.state, progress=dict(beat.progress)):
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
