"""Celery tasks: thin wrappers that take IDs and call the pipeline."""

from celery import shared_task
from django.conf import settings

from annotations.services.participants import leases_reclaim
from workers.pipeline import TRANSIENT_ERRORS, precompute_run


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.MMEVAL_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.MMEVAL_TASK_TIME_LIMIT,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def precompute_study(self, job_id: int) -> dict:
    """Predictions, item sampling and explanations for one study. Safe to redeliver."""
    return precompute_run(job_id=job_id)


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def reclaim_expired_leases() -> int:
    """Run by celery beat (settings.CELERY_BEAT_SCHEDULE, every minute): leases past the
    time limit give their slots back, so an abandoned participant's items go to the next
    one. Safe to run concurrently (SKIP LOCKED) and to repeat."""
    return leases_reclaim()
