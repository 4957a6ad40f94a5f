"""Precompute as bounded chunks that any number of workers take in parallel.

A job moves through stages: ``predictions`` for the whole dataset; ``strength`` (the 2x2
modality interaction of every item) when the study filters items by interaction strength;
then the item pools are sampled and the ``attribution`` and ``interaction`` chunks of the
pool run side by side. :func:`precompute_advance` plans the next stage once every chunk of the
current one has finished; it runs after each chunk, and from the watchdog.

Crash safety rests on the lease rules of ``services/leases.py`` (claims with a fresh token,
heartbeats, take-over of a chunk whose heartbeat stopped, at most ``MMEVAL_CHUNK_MAX_ATTEMPTS``
claims), by :func:`precompute_watchdog` (celery beat) or by a redelivered message, and on one
more:

* results are stored per (model, item, method, target) under a unique constraint, so a chunk
  computed twice still stores every row once.

Hand-over to the task queue happens after commit. When the broker refuses or hangs, the job
records ``dispatch_error`` for the researcher and the watchdog (or a retry) hands it over
again; nothing is left running without a worker knowing of it.

The rules: docs/DESIGN.md, "Precompute".
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotations.models import PrecomputeChunk, PrecomputeJob, Study
from annotations.selectors.counterfactual import study_counterfactual_items_missing, study_items_without_shown_edit
from annotations.selectors.precompute import (
    ATTENTION_PREFIX,
    MULTIVIZ_PREFIX,
    study_attribution_methods,
    study_decision_features_missing,
    study_explanation_items_missing,
    study_items_without_predictions,
    study_needs_features,
    study_open_job,
    study_required_methods,
    study_strength_items_missing,
)
from annotations.selectors.studies import study_explanation_targets
from annotations.services.background import task_run_in_background
from annotations.services.explanations import explanation_store_failed
from annotations.services.leases import (
    lease_claim,
    lease_dispatch_stamp,
    lease_finish,
    lease_heartbeat,
    lease_release,
    lease_stale_reset,
)
from annotations.services.studies import StudyError, study_select_items, study_views_check
from annotations.study_tasks import COUNTERFACTUAL

logger = logging.getLogger(__name__)

OPEN = (PrecomputeJob.Status.QUEUED, PrecomputeJob.Status.RUNNING)
Stage = PrecomputeChunk.Stage
ChunkStatus = PrecomputeChunk.Status
CHUNK_TASK = "workers.tasks.precompute_chunk_task"
ADVANCE_TASK = "workers.tasks.precompute_advance_task"
INLINE_TASK = "workers.tasks.precompute_inline_task"  # embedded mode: the whole job in this process
# Stages whose failure leaves nothing to build on: the job fails with the chunk's error.
BLOCKING_STAGES = (Stage.PREDICTIONS, Stage.STRENGTH, Stage.FEATURES, Stage.COUNTERFACTUAL)


class PrecomputeError(Exception):
    """A precompute that cannot start (e.g. a live study)."""


# --------------------------------------------------------------------------- start


def precompute_job_create(*, study: Study, runner: str = PrecomputeJob.Runner.WORKERS) -> PrecomputeJob:
    """The study's open precompute job, or a new one. The study becomes "precomputing".
    Nothing is handed to workers: :func:`precompute_start` does that, the command line runs
    the job itself (``workers.pipeline.precompute_run``)."""
    if study.status not in (Study.Status.DRAFT, Study.Status.READY, Study.Status.PRECOMPUTING):
        raise StudyError(f"a {study.status} study cannot be precomputed again")
    study_views_check(study=study)
    with transaction.atomic():
        Study.objects.filter(pk=study.pk).update(status=Study.Status.PRECOMPUTING)
        study.status = Study.Status.PRECOMPUTING
        job = study_open_job(study=study)
        if job is not None:
            if job.runner != runner:
                PrecomputeJob.objects.filter(pk=job.pk).update(runner=runner)
                job.runner = runner
            return job
        try:
            with transaction.atomic():
                return PrecomputeJob.objects.create(
                    study=study,
                    runner=runner,
                    queue=settings.CELERY_GPU_QUEUE,
                    batch_size=settings.MMEVAL_PRECOMPUTE_BATCH_SIZE,
                )
        except IntegrityError:  # a concurrent click created it first
            return study_open_job(study=study)


def precompute_start(*, study: Study) -> PrecomputeJob:
    """Start the study's precompute, or resume its open job: hand its planning and every
    pending or stalled chunk to the workers after commit. With no broker configured (the
    embedded default) the job runs in a background thread of this process instead, so a web
    request never computes. A second call while a job is open reuses it."""
    embedded = settings.CELERY_TASK_ALWAYS_EAGER
    runner = PrecomputeJob.Runner.INLINE if embedded else PrecomputeJob.Runner.WORKERS
    with transaction.atomic():
        job = precompute_job_create(study=study, runner=runner)
        if embedded:
            transaction.on_commit(
                lambda: task_run_in_background(
                    task_name=INLINE_TASK, args=(job.pk,), thread_name=f"precompute-{job.pk}"
                )
            )
        else:
            _reset_stalled(job=job, now=timezone.now())
            pending = list(job.chunks.filter(status=ChunkStatus.PENDING).values_list("pk", flat=True))
            transaction.on_commit(lambda: precompute_dispatch(job=job, chunk_ids=pending, advance=True))
    return job


# --------------------------------------------------------------------------- hand-over


def precompute_dispatch(*, job: PrecomputeJob, chunk_ids: list[int], advance: bool = False) -> bool:
    """Publish the job's planning task (``advance``) and its chunk tasks on the job's queue.
    Never raises: a broker that refuses or hangs (bounded by the broker timeouts in settings)
    is recorded on the job as ``dispatch_error`` and retried by the watchdog. Inline jobs
    publish nothing; their runner takes pending chunks itself."""
    if job.runner != PrecomputeJob.Runner.WORKERS:
        return True
    from mmeval.celery import app

    queue = job.queue or settings.CELERY_GPU_QUEUE
    try:
        # By name: the web process never imports the workers' code (torch and the engine).
        if advance:
            app.send_task(ADVANCE_TASK, args=(job.pk,), queue=queue)
        for chunk_id in chunk_ids:
            app.send_task(CHUNK_TASK, args=(chunk_id,), queue=queue)
    except Exception as exc:  # kombu/redis raise many types; every one means "not handed over"
        message = (
            f"The task queue did not accept the work ({exc.__class__.__name__}: {exc}). "
            "Nothing is lost: it is handed over again automatically once the queue answers, "
            "or when you press Retry."
        )
        logger.warning("precompute job %s not dispatched: %s", job.pk, exc)
        PrecomputeJob.objects.filter(pk=job.pk).update(dispatch_error=message)
        job.dispatch_error = message
        return False
    lease_dispatch_stamp(model=PrecomputeChunk, pks=chunk_ids)
    if job.dispatch_error:
        PrecomputeJob.objects.filter(pk=job.pk).update(dispatch_error="")
        job.dispatch_error = ""
    return True


# --------------------------------------------------------------------------- planning


def precompute_advance(*, job_id: int) -> list[int]:
    """Plan the next stage once the current one has finished, or finish the job. Returns the
    new chunks' IDs (already handed to workers after commit for worker jobs). Idempotent and
    safe to call concurrently: the job row is locked while planning, and a call that finds
    open chunks changes nothing."""
    with transaction.atomic():
        job = PrecomputeJob.objects.select_for_update(of=("self",)).select_related("study").get(pk=job_id)
        if job.status not in OPEN:
            return []
        if job.chunks.filter(status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING]).exists():
            return []
        blocking = job.chunks.filter(stage__in=BLOCKING_STAGES, status=ChunkStatus.FAILED).first()
        if blocking is not None:
            _job_finish(job=job, error=blocking.error or "a precompute chunk failed")
            return []
        while True:
            stage = _next_stage(job)
            if stage is None:
                _job_finish(job=job, error=_explanation_failures(job) or _counterfactual_gaps(job))
                return []
            try:
                created = _plan_stage(job=job, stage=stage)
            except StudyError as exc:
                _job_finish(job=job, error=str(exc))
                return []
            if created:
                if job.status == PrecomputeJob.Status.QUEUED:
                    PrecomputeJob.objects.filter(pk=job.pk).update(status=PrecomputeJob.Status.RUNNING)
                transaction.on_commit(lambda: precompute_dispatch(job=job, chunk_ids=created))
                return created


def _next_stage(job: PrecomputeJob) -> str | None:
    order = [Stage.PREDICTIONS]
    if (job.study.design.get("filters") or {}).get("interaction_strength"):
        order.append(Stage.STRENGTH)
    if study_needs_features(study=job.study):
        order.append(Stage.FEATURES)
    order.append("explanations")
    if job.study.task == COUNTERFACTUAL:
        order.append(Stage.COUNTERFACTUAL)  # the edits rank groups by the stored explanations
    if not job.stage:
        return order[0]
    if job.stage not in order or job.stage == order[-1]:
        return None
    return order[order.index(job.stage) + 1]


def _plan_stage(*, job: PrecomputeJob, stage: str) -> list[int]:
    """Create the stage's chunks (only work not stored yet) and record its size in the plan."""
    study = job.study
    batch_size = job.batch_size
    plan = dict(job.plan or {})
    chunks: list[PrecomputeChunk] = []
    if stage == Stage.PREDICTIONS:
        total, todo = study_items_without_predictions(study=study)
        plan[stage] = {"total": total, "skipped": total - len(todo)}
        chunks = [PrecomputeChunk(stage=stage, item_ids=part) for part in _split(todo, batch_size)]
    elif stage == Stage.STRENGTH:
        total, todo = study_strength_items_missing(study=study)
        plan[stage] = {"total": total, "skipped": total - len(todo)}
        chunks = [PrecomputeChunk(stage=stage, item_ids=part) for part in _split(todo, batch_size)]
    elif stage == Stage.FEATURES:
        # One chunk for the whole dataset (features of every item, then the sparse head fitted
        # on them): stored per model and dataset, so another study's run is reused.
        missing = study_decision_features_missing(study=study)
        plan[stage] = {"total": 1, "skipped": 0 if missing else 1}
        chunks = [PrecomputeChunk(stage=stage, method=study.explanation_method, item_ids=[])] if missing else []
    elif stage == Stage.COUNTERFACTUAL:
        todo = study_counterfactual_items_missing(study=study)
        total = study.study_items.count()
        plan[stage] = {"total": total, "skipped": total - len(todo)}
        chunks = [
            PrecomputeChunk(stage=stage, method=study.explanation_method, item_ids=part)
            for part in _split(todo, batch_size)
        ]
    else:
        study_select_items(study=study)
        targets = study_explanation_targets(study=study)
        attribution_methods = study_attribution_methods(study=study)
        for method, views in study_required_methods(study=study).items():
            part = (
                Stage.ATTRIBUTION
                if method in attribution_methods
                else Stage.MULTIVIZ
                if method.startswith(MULTIVIZ_PREFIX)
                else Stage.ATTENTION
                if method.startswith(ATTENTION_PREFIX)
                else Stage.INTERACTION
            )
            todo = study_explanation_items_missing(study=study, method=method, views=views, targets=targets)
            plan[part] = {"total": len(targets), "skipped": len(targets) - len(todo), "method": method}
            # Chunks of whole items, about batch_size (item, target) rows each.
            per_chunk = max(1, batch_size // max(1, max((len(v) for v in targets.values()), default=1)))
            chunks += [
                PrecomputeChunk(stage=part, method=method, item_ids=ids, targets={str(i): targets[i] for i in ids})
                for ids in _split(todo, per_chunk)
            ]
    first = _last_index(job) + 1
    for offset, chunk in enumerate(chunks):
        chunk.job, chunk.index = job, first + offset
    created = PrecomputeChunk.objects.bulk_create(chunks)
    PrecomputeJob.objects.filter(pk=job.pk).update(stage=stage, plan=plan)
    job.stage, job.plan = stage, plan
    return [chunk.pk for chunk in created]


def _last_index(job: PrecomputeJob) -> int:
    return job.chunks.order_by("-index").values_list("index", flat=True).first() or 0


def _split(ids: list[int], size: int) -> list[list[int]]:
    return [ids[start : start + size] for start in range(0, len(ids), max(1, size))]


def _explanation_failures(job: PrecomputeJob) -> str:
    failed = list(job.chunks.filter(status=ChunkStatus.FAILED).order_by("index"))
    if not failed:
        return ""
    rows = sum(chunk.failed_rows for chunk in failed)
    return f"{rows} explanation(s) failed. The first error:\n\n{failed[0].error}"


def _counterfactual_gaps(job: PrecomputeJob) -> str:
    """A counterfactual study needs an edit of every pool item: name the items without one."""
    if job.study.task != COUNTERFACTUAL:
        return ""
    missing = study_items_without_shown_edit(study=job.study)
    if not missing:
        return ""
    return (
        f"{len(missing)} item(s) of the pool have no edit to show (item IDs {missing[:10]}): none of the "
        "design's kinds applies, or the model's answer on each lies outside the item's choices. Add edit kinds "
        "(modality_baseline applies to every item) or swap pairs whose words the items hold."
    )


def _job_finish(*, job: PrecomputeJob, error: str) -> None:
    """Close the job; the study becomes ready unless the job failed (then a draft again)."""
    status = PrecomputeJob.Status.FAILED if error else PrecomputeJob.Status.DONE
    PrecomputeJob.objects.filter(pk=job.pk).update(
        status=status, error=error, finished_at=timezone.now(), dispatch_error=""
    )
    Study.objects.filter(pk=job.study_id, status=Study.Status.PRECOMPUTING).update(
        status=Study.Status.DRAFT if error else Study.Status.READY
    )
    job.status, job.error = status, error


# --------------------------------------------------------------------------- chunks


def precompute_chunk_claim(*, chunk_id: int, worker: str) -> PrecomputeChunk | None:
    """Take a chunk for computing: a pending one, or a running one whose heartbeat stopped
    (its worker died). Returns it with a fresh ``claim`` token, or None when it is done, held
    by a live worker, or its job is closed. A chunk that killed its worker too often fails
    (the lease rules: ``services/leases.py``)."""

    def give_up(chunk: PrecomputeChunk, now) -> None:
        _chunk_give_up(chunk, now)
        transaction.on_commit(lambda: precompute_advance(job_id=chunk.job_id))

    def job_running(chunk: PrecomputeChunk) -> None:
        if chunk.job.status == PrecomputeJob.Status.QUEUED:
            PrecomputeJob.objects.filter(pk=chunk.job_id, status=PrecomputeJob.Status.QUEUED).update(
                status=PrecomputeJob.Status.RUNNING
            )

    return lease_claim(
        model=PrecomputeChunk,
        pk=chunk_id,
        worker=worker,
        where=Q(job__status__in=OPEN),
        related=("job__study__model", "job__study__dataset"),
        on_exhausted=give_up,
        on_claimed=job_running,
    )


def _chunk_give_up(chunk: PrecomputeChunk, now) -> None:
    error = (
        f"The worker stopped {chunk.attempts} times while computing this chunk of "
        f"{len(chunk.item_ids)} item(s) (killed, or out of memory?). Items: {chunk.item_ids}"
    )
    PrecomputeChunk.objects.filter(pk=chunk.pk).update(
        status=ChunkStatus.FAILED, error=error, finished_at=now, failed_rows=chunk.rows
    )
    if chunk.stage in (Stage.ATTRIBUTION, Stage.INTERACTION, Stage.MULTIVIZ, Stage.ATTENTION):
        explanation_store_failed(
            model=chunk.job.study.model,
            method=chunk.method,
            error=error,
            pairs=[(int(item_id), label) for item_id, labels in chunk.targets.items() for label in labels],
        )


def precompute_chunk_heartbeat(*, chunk_id: int, claim: str) -> bool:
    """Mark the chunk alive. False when the claim was lost (the chunk was taken over)."""
    return lease_heartbeat(model=PrecomputeChunk, pk=chunk_id, claim=claim)


def precompute_chunk_finish(*, chunk: PrecomputeChunk, error: str = "", failed_rows: int = 0) -> list[int]:
    """Close a claimed chunk (done, or failed with ``error``) and advance its job. A worker
    whose claim was taken over changes nothing: the new holder finishes the chunk."""
    status = ChunkStatus.FAILED if error else ChunkStatus.DONE
    if not lease_finish(row=chunk, status=status, error=error, failed_rows=failed_rows):
        return []
    return precompute_advance(job_id=chunk.job_id)


def precompute_chunk_release(*, chunk: PrecomputeChunk) -> None:
    """Give a claimed chunk back unfinished (a transient error: the task retries it)."""
    lease_release(row=chunk)


def precompute_chunk_split(*, chunk: PrecomputeChunk) -> list[int]:
    """The chunk ran into the task's soft time limit: replace it by two halves (a single item
    that is still too slow fails, naming the limit). Returns the new chunks' IDs, handed to
    the workers after commit."""
    if len(chunk.item_ids) <= 1:
        what = (
            "The decision features of the whole dataset took" if chunk.stage == Stage.FEATURES else "One item took"
        )  # the features chunk is one indivisible piece of work
        precompute_chunk_finish(
            chunk=chunk,
            failed_rows=chunk.rows,
            error=(
                f"{what} longer than the task time limit ({settings.MMEVAL_TASK_SOFT_TIME_LIMIT} s). "
                "Raise MMEVAL_TASK_SOFT_TIME_LIMIT or use a faster device."
            ),
        )
        return []
    with transaction.atomic():
        job = PrecomputeJob.objects.select_for_update(of=("self",)).get(pk=chunk.job_id)
        if not lease_finish(row=chunk, status=ChunkStatus.SPLIT):
            return []
        half = (len(chunk.item_ids) + 1) // 2
        first = _last_index(job) + 1
        parts = [chunk.item_ids[:half], chunk.item_ids[half:]]
        created = PrecomputeChunk.objects.bulk_create(
            [
                PrecomputeChunk(
                    job=job,
                    stage=chunk.stage,
                    method=chunk.method,
                    index=first + k,
                    item_ids=ids,
                    targets={str(i): chunk.targets[str(i)] for i in ids} if chunk.targets else {},
                )
                for k, ids in enumerate(parts)
            ]
        )
        ids = [c.pk for c in created]
        transaction.on_commit(lambda: precompute_dispatch(job=job, chunk_ids=ids))
    return ids


def precompute_next_pending(*, job_id: int) -> int | None:
    """The lowest pending chunk of a job (the inline runner's next piece of work)."""
    return (
        PrecomputeChunk.objects.filter(job_id=job_id, status=ChunkStatus.PENDING)
        .order_by("index")
        .values_list("pk", flat=True)
        .first()
    )


# --------------------------------------------------------------------------- watchdog


def precompute_take_over(*, job_id: int) -> None:
    """This process runs the job itself (``workers.pipeline.precompute_run``): nothing more
    is handed to workers, and chunks whose runner died are pending again."""
    PrecomputeJob.objects.filter(pk=job_id).update(runner=PrecomputeJob.Runner.INLINE)
    _reset_stalled(job=PrecomputeJob(pk=job_id), now=timezone.now())


def _reset_stalled(*, job: PrecomputeJob, now) -> list[int]:
    return lease_stale_reset(rows=PrecomputeChunk.objects.filter(job_id=job.pk), now=now)


def precompute_watchdog(*, now=None) -> dict[str, int]:
    """Run by celery beat: keep every open worker job moving.

    * chunks whose worker stopped beating are handed out again;
    * pending chunks of a job that has made no progress for ``MMEVAL_REDISPATCH_SECONDS``
      are published again (a lost or flushed message; duplicates are harmless);
    * jobs the queue refused are handed over again;
    * jobs with nothing open are advanced (a worker died between finishing a chunk and
      planning the next stage).
    Returns counts of what it did."""
    now = now or timezone.now()
    counts = {"stalled": 0, "redispatched": 0, "advanced": 0}
    quiet = now - timedelta(seconds=settings.MMEVAL_REDISPATCH_SECONDS)
    for job in PrecomputeJob.objects.filter(status__in=OPEN, runner=PrecomputeJob.Runner.WORKERS):
        stalled = _reset_stalled(job=job, now=now)
        counts["stalled"] += len(stalled)
        pending = list(job.chunks.filter(status=ChunkStatus.PENDING).values_list("pk", flat=True))
        recent = job.chunks.filter(Q(started_at__gte=quiet) | Q(finished_at__gte=quiet) | Q(dispatched_at__gte=quiet))
        if stalled or job.dispatch_error or (pending and not recent.exists()):
            precompute_dispatch(job=job, chunk_ids=pending, advance=not pending)
            counts["redispatched"] += len(pending)
        if not pending and not job.chunks.filter(status=ChunkStatus.RUNNING).exists():
            precompute_advance(job_id=job.pk)
            counts["advanced"] += 1
    return counts
