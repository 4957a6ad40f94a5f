"""The precompute services without an engine: planning stages into chunks, claims and
heartbeats, the watchdog, hand-over failures, splitting at the time limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import Explanation, PrecomputeChunk, PrecomputeJob, Study
from annotations.selectors.precompute import job_progress
from annotations.selectors.studies import study_explanation_targets
from annotations.services import precompute as service
from annotations.services.datasets import dataset_import
from annotations.services.precompute import (
    precompute_advance,
    precompute_chunk_claim,
    precompute_chunk_finish,
    precompute_chunk_heartbeat,
    precompute_chunk_split,
    precompute_job_create,
    precompute_start,
    precompute_watchdog,
)
from annotations.services.studies import StudyError, study_create
from tests.builders.studies import TWO_ARMS, make_explanations, make_model, make_predictions, write_dataset

pytestmark = pytest.mark.django_db

Status = PrecomputeChunk.Status


@pytest.fixture
def published(monkeypatch):
    """Every task handed to the queue, as (task name, args, queue), instead of publishing."""
    from mmeval.celery import app

    sent: list[tuple[str, tuple, str]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name.rsplit(".", 1)[-1], args, queue)))
    return sent


@pytest.fixture
def study(alice, tmp_path, settings):
    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = 8
    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 20))
    return study_create(
        owner=alice,
        name="s",
        dataset=dataset,
        model=make_model(alice),
        conditions=TWO_ARMS,
        n_items=6,
        items_per_participant=3,
        raters_per_item=1,
        seed=5,
    )


def _finish_all(job: PrecomputeJob, stage: str) -> list[int]:
    """Claim and finish every pending chunk of ``stage``, as a worker would (no engine)."""
    new = []
    for chunk_id in job.chunks.filter(stage=stage, status=Status.PENDING).values_list("pk", flat=True):
        chunk = precompute_chunk_claim(chunk_id=chunk_id, worker="w1")
        new += precompute_chunk_finish(chunk=chunk)
    return new


def test_a_job_runs_stage_by_stage_in_chunks(study, published):
    job = precompute_job_create(study=study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.PRECOMPUTING

    first = precompute_advance(job_id=job.pk)
    chunks = list(PrecomputeChunk.objects.filter(pk__in=first))
    assert [len(c.item_ids) for c in chunks] == [8, 8, 4] and {c.stage for c in chunks} == {"predictions"}
    assert precompute_advance(job_id=job.pk) == []  # open chunks: nothing to plan yet

    make_predictions(study.model, study.dataset.items.order_by("line_number"), n_right=10)
    assert _finish_all(job, "predictions")  # the last one planned the explanations
    job.refresh_from_db()
    assert job.stage == "explanations"
    targets = study_explanation_targets(study=study)
    explain = job.chunks.filter(stage="attribution")
    assert sorted(i for c in explain for i in c.item_ids) == sorted(targets)
    assert all(len(c.item_ids) * 4 <= 8 for c in explain)  # about batch_size rows per chunk

    job.refresh_from_db()
    halfway = job_progress(job=job)
    assert halfway["percent"] == 50  # predictions all done, explanations not started: parts count alike
    make_explanations(study)
    _finish_all(job, "attribution")
    job.refresh_from_db()
    assert job.status == PrecomputeJob.Status.DONE and job_progress(job=job)["percent"] == 100
    assert Study.objects.get(pk=study.pk).status == Study.Status.READY
    progress = job_progress(job=job)
    assert progress["done"] == progress["total"] == 20 + len(targets)
    assert [(p["part"], p["done"], p["total"]) for p in progress["parts"]] == [
        ("predictions", 20, 20),
        ("attribution", len(targets), len(targets)),
    ]


def test_work_already_stored_is_not_planned_again(study, published):
    make_predictions(study.model, study.dataset.items.all(), n_right=10)
    job = precompute_job_create(study=study)
    precompute_advance(job_id=job.pk)
    assert not job.chunks.filter(stage="predictions").exists()
    assert job.chunks.filter(stage="attribution").exists()
    job.refresh_from_db()
    assert job_progress(job=job)["parts"][0] == {"part": "predictions", "title": "Predictions", "total": 20, "done": 20}


def test_a_failed_prediction_chunk_fails_the_job_with_its_traceback(study, published):
    job = precompute_job_create(study=study)
    precompute_advance(job_id=job.pk)
    chunk = precompute_chunk_claim(chunk_id=job.chunks.first().pk, worker="w1")
    precompute_chunk_finish(chunk=chunk, error="Traceback: the adapter broke")
    for other in job.chunks.filter(status=Status.PENDING):
        precompute_chunk_finish(chunk=precompute_chunk_claim(chunk_id=other.pk, worker="w1"))
    job.refresh_from_db()
    assert job.status == PrecomputeJob.Status.FAILED and job.error == "Traceback: the adapter broke"
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_too_few_items_fails_the_job_with_the_reason(study, published):
    job = precompute_job_create(study=study)
    chunks = precompute_advance(job_id=job.pk)
    for chunk_id in chunks:  # workers that stored no prediction
        precompute_chunk_finish(chunk=precompute_chunk_claim(chunk_id=chunk_id, worker="w1"))
    job.refresh_from_db()
    assert job.status == PrecomputeJob.Status.FAILED and "only 0 items have predictions" in job.error


def test_one_open_job_per_study(study, published):
    first = precompute_job_create(study=study)
    assert precompute_job_create(study=Study.objects.get(pk=study.pk)).pk == first.pk
    assert precompute_start(study=Study.objects.get(pk=study.pk)).pk == first.pk
    assert PrecomputeJob.objects.filter(study=study).count() == 1


def test_a_live_study_is_not_precomputed(study):
    Study.objects.filter(pk=study.pk).update(status=Study.Status.LIVE)
    with pytest.raises(StudyError, match="live study"):
        precompute_start(study=Study.objects.get(pk=study.pk))


def test_a_claim_is_exclusive_until_its_heartbeat_stops(study, published, settings):
    settings.MMEVAL_CHUNK_STALE_SECONDS = 60
    job = precompute_job_create(study=study)
    chunk_id = precompute_advance(job_id=job.pk)[0]

    held = precompute_chunk_claim(chunk_id=chunk_id, worker="w1")
    assert held.attempts == 1 and PrecomputeJob.objects.get(pk=job.pk).status == "running"
    assert precompute_chunk_claim(chunk_id=chunk_id, worker="w2") is None  # w1 is alive
    assert precompute_chunk_heartbeat(chunk_id=chunk_id, claim=held.claim)

    # w1 dies: its heartbeat is old; w2 takes over, and w1's late results change nothing.
    PrecomputeChunk.objects.filter(pk=chunk_id).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    taken = precompute_chunk_claim(chunk_id=chunk_id, worker="w2")
    assert taken.attempts == 2 and taken.claim != held.claim
    assert not precompute_chunk_heartbeat(chunk_id=chunk_id, claim=held.claim)
    precompute_chunk_finish(chunk=held, error="late and wrong")
    assert PrecomputeChunk.objects.get(pk=chunk_id).status == Status.RUNNING
    precompute_chunk_finish(chunk=taken)
    assert PrecomputeChunk.objects.get(pk=chunk_id).status == Status.DONE
    assert precompute_chunk_claim(chunk_id=chunk_id, worker="w3") is None  # done stays done


def test_a_chunk_that_keeps_killing_its_worker_fails(study, published, settings):
    settings.MMEVAL_CHUNK_MAX_ATTEMPTS = 2
    make_predictions(study.model, study.dataset.items.all(), n_right=10)
    job = precompute_job_create(study=study)
    chunk_id = precompute_advance(job_id=job.pk)[0]
    for _ in range(2):
        precompute_chunk_claim(chunk_id=chunk_id, worker="w1")
        PrecomputeChunk.objects.filter(pk=chunk_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    assert precompute_chunk_claim(chunk_id=chunk_id, worker="w1") is None
    chunk = PrecomputeChunk.objects.get(pk=chunk_id)
    assert chunk.status == Status.FAILED and "stopped 2 times" in chunk.error
    failed = Explanation.objects.filter(model=study.model, status=Explanation.Status.FAILED)
    assert {(e.item_id, e.target_label) for e in failed} == {
        (int(i), label) for i, labels in chunk.targets.items() for label in labels
    }


def test_the_watchdog_hands_out_a_dead_workers_chunk(study, published, settings):
    settings.MMEVAL_CHUNK_STALE_SECONDS = 30
    job = precompute_job_create(study=study)
    chunk_id = precompute_advance(job_id=job.pk)[0]
    precompute_chunk_claim(chunk_id=chunk_id, worker="killed")
    published.clear()

    assert precompute_watchdog() == {"stalled": 0, "redispatched": 0, "advanced": 0}  # still beating
    later = timezone.now() + timedelta(seconds=31)
    counts = precompute_watchdog(now=later)

    assert counts["stalled"] == 1
    assert PrecomputeChunk.objects.get(pk=chunk_id).status == Status.PENDING
    assert ("precompute_chunk_task", (chunk_id,), job.queue) in published


def test_the_watchdog_advances_a_job_whose_worker_died_between_chunks(study, published):
    make_predictions(study.model, study.dataset.items.all(), n_right=10)
    job = precompute_job_create(study=study)
    precompute_advance(job_id=job.pk)
    make_explanations(study)
    # Every chunk finished, but the worker died before planning what comes next.
    job.chunks.update(status=Status.DONE, finished_at=timezone.now())

    assert precompute_watchdog()["advanced"] == 1
    assert PrecomputeJob.objects.get(pk=job.pk).status == PrecomputeJob.Status.DONE


def test_a_refused_hand_over_is_recorded_and_retried(study, monkeypatch):
    from mmeval.celery import app

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr(app, "send_task", refuse)
    job = precompute_job_create(study=study)
    assert not service.precompute_dispatch(job=job, chunk_ids=[], advance=True)
    job.refresh_from_db()
    assert "did not accept the work" in job.dispatch_error and "Connection refused" in job.dispatch_error
    assert job_progress(job=job)["dispatch_error"] == job.dispatch_error

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args)))
    precompute_watchdog()
    job.refresh_from_db()
    assert job.dispatch_error == "" and sent == [("workers.tasks.precompute_advance_task", (job.pk,))]


def test_a_chunk_past_the_time_limit_is_split_in_halves(study, published):
    make_predictions(study.model, study.dataset.items.all(), n_right=10)
    job = precompute_job_create(study=study)
    chunk_id = precompute_advance(job_id=job.pk)[0]
    chunk = precompute_chunk_claim(chunk_id=chunk_id, worker="w1")

    halves = precompute_chunk_split(chunk=chunk)

    assert PrecomputeChunk.objects.get(pk=chunk_id).status == Status.SPLIT
    parts = list(PrecomputeChunk.objects.filter(pk__in=halves).order_by("index"))
    assert [p.item_ids for p in parts] == [chunk.item_ids[:1], chunk.item_ids[1:]]
    assert all(p.targets == {str(i): chunk.targets[str(i)] for i in p.item_ids} for p in parts)
    # A single item that is still too slow fails, naming the limit.
    single = precompute_chunk_claim(chunk_id=halves[0], worker="w1")
    assert precompute_chunk_split(chunk=single) == []
    assert "longer than the task time limit" in PrecomputeChunk.objects.get(pk=halves[0]).error


def test_the_published_task_names_are_the_workers_tasks():
    from annotations.services.precompute import ADVANCE_TASK, CHUNK_TASK
    from workers.tasks import precompute_advance_task, precompute_chunk_task

    assert (CHUNK_TASK, ADVANCE_TASK) == (precompute_chunk_task.name, precompute_advance_task.name)


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_a_short_lock_instead_of_skipping_the_chunk(study, published):
    """The dispatcher stamps ``dispatched_at`` on the chunks right after publishing them, so a
    fast worker can try to claim a chunk while that UPDATE holds its row. The claim must wait
    and take the chunk: a claim that skipped it would acknowledge the message and leave the
    chunk pending with no message left (found by bench_precompute with two workers)."""
    import threading

    from django.db import connection, transaction

    job = precompute_job_create(study=study)
    chunk_id = precompute_advance(job_id=job.pk)[0]
    locked, release = threading.Event(), threading.Event()

    def dispatcher_stamping() -> None:
        try:
            with transaction.atomic():
                PrecomputeChunk.objects.filter(pk=chunk_id).update(dispatched_at=timezone.now())
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=dispatcher_stamping)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()
    chunk = precompute_chunk_claim(chunk_id=chunk_id, worker="w1")
    holder.join(10)

    assert chunk is not None and chunk.pk == chunk_id
    assert PrecomputeChunk.objects.get(pk=chunk_id).status == Status.RUNNING
