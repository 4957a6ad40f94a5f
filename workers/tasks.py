"""Celery tasks: thin wrappers that take IDs and call the pipeline or a service.

Precompute tasks go to the job's queue (``PrecomputeJob.queue``, the GPU queue by default),
named at publish time; beat's maintenance tasks go to the default queue. Every task is safe
to run twice: a redelivered message finds its work done or taken and returns.
"""

from celery import shared_task
from django.conf import settings

from annotations.services.participants import leases_reclaim
from annotations.services.precompute import precompute_advance, precompute_watchdog
from workers.pipeline import TRANSIENT_ERRORS, chunk_run, precompute_run

TRANSIENT_RETRY = {"autoretry_for": TRANSIENT_ERRORS, "retry_backoff": True, "retry_backoff_max": 120, "max_retries": 8}


@shared_task(
    bind=True,
    soft_time_limit=settings.MMEVAL_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.MMEVAL_TASK_TIME_LIMIT,
    **TRANSIENT_RETRY,
)
def precompute_chunk_task(self, chunk_id: int) -> str:
    """Compute one precompute chunk (bounded work: one engine batch). A chunk that outgrows
    the soft time limit is split in two instead of failing the job."""
    return chunk_run(chunk_id=chunk_id, worker=self.request.hostname or "worker")


@shared_task(soft_time_limit=120, time_limit=180, **TRANSIENT_RETRY)
def precompute_advance_task(job_id: int) -> int:
    """Plan a job's next stage (or finish it) and hand the new chunks to the workers."""
    return len(precompute_advance(job_id=job_id))


@shared_task(soft_time_limit=120, time_limit=180)
def precompute_watchdog_task() -> dict:
    """Run by celery beat (every MMEVAL_WATCHDOG_SECONDS): chunks of a killed worker are
    handed out again, refused hand-overs retried, finished stages advanced."""
    return precompute_watchdog()


@shared_task(soft_time_limit=60, time_limit=90)
def reclaim_expired_leases() -> int:
    """Run by celery beat (settings.CELERY_BEAT_SCHEDULE, every minute): leases past the
    time limit give their slots back, so an abandoned participant's items go to the next
    one. Safe to run concurrently (SKIP LOCKED) and to repeat."""
    return leases_reclaim()


@shared_task(
    bind=True,
    soft_time_limit=settings.MMEVAL_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.MMEVAL_TASK_TIME_LIMIT,
    **TRANSIENT_RETRY,
)
def model_report_task(self, report_id: int) -> str:
    """Compute a model report (or go on with it from its last finished stage). One that
    reaches the soft time limit after finishing stages hands itself to a fresh task."""
    from workers.report_pipeline import model_report_run_job

    return model_report_run_job(report_id=report_id, worker=self.request.hostname or "worker")


@shared_task(soft_time_limit=120, time_limit=180)
def model_report_watchdog_task() -> dict:
    """Run by celery beat (every MMEVAL_WATCHDOG_SECONDS): reports of dead workers, and reports
    the queue refused or lost, are handed out again."""
    from annotations.services.model_reports import model_report_watchdog

    return model_report_watchdog()


@shared_task
def precompute_inline_task(job_id: int) -> None:
    """Embedded mode only (never published): the whole job in this process, chunk after chunk
    (``annotations.services.background``)."""
    precompute_run(job_id=job_id)


@shared_task
def model_report_inline_task(report_id: int) -> None:
    """Embedded mode only (never published): the whole report in this process."""
    from workers.report_pipeline import model_report_run_inline

    model_report_run_inline(report_id=report_id)


@shared_task(
    bind=True, soft_time_limit=settings.MMEVAL_TASK_SOFT_TIME_LIMIT, time_limit=settings.MMEVAL_TASK_TIME_LIMIT
)
def dashboard_refresh_task(self, study_id: int) -> str:
    """Recompute a study's dashboard in the background (``annotations.services.dashboard``;
    published with the debounce as countdown, or run in a thread when embedded). Safe to run
    twice: the second finds nothing queued, or the lease held."""
    from workers.pipeline import dashboard_refresh

    return dashboard_refresh(
        study_id=study_id, worker=(self.request.hostname or "worker") if self.request.id else "embedded"
    )
