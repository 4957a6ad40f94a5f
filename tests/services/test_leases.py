"""The one lease mechanism of background work (``annotations.services.leases``), checked once
on every model that uses it: precompute chunks and model reports. Claims with a fresh token,
the row lock a claim waits for, take-over of a silent worker, the attempts limit, releases,
the stale reset and the dispatch stamp behave the same for both."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotations.models import LeasedWork, ModelReport, PrecomputeChunk, PrecomputeJob
from annotations.services.datasets import dataset_import
from annotations.services.leases import (
    lease_claim,
    lease_dispatch_stamp,
    lease_finish,
    lease_heartbeat,
    lease_release,
    lease_stale_reset,
    lease_update,
)
from annotations.services.studies import study_create
from tests.builders.studies import TWO_ARMS, make_model, write_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_data(alice, tmp_path):
    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "src", 8))
    return alice, dataset, make_model(alice)


def _chunk(alice, dataset, model) -> PrecomputeChunk:
    study = study_create(
        owner=alice,
        name="s",
        dataset=dataset,
        model=model,
        conditions=TWO_ARMS,
        n_items=4,
        items_per_participant=2,
        raters_per_item=1,
        seed=5,
    )
    job = PrecomputeJob.objects.create(study=study)
    return PrecomputeChunk.objects.create(job=job, stage="predictions", index=1, item_ids=[1, 2])


def _report(alice, dataset, model) -> ModelReport:
    return ModelReport.objects.create(owner=alice, model=model, dataset=dataset)


@pytest.fixture(params=["chunk", "report"])
def work(request, owner_data) -> LeasedWork:
    return {"chunk": _chunk, "report": _report}[request.param](*owner_data)


def _never(row, now):
    raise AssertionError("given up too early")


def _claim(row: LeasedWork, worker: str, **kwargs) -> LeasedWork | None:
    kwargs.setdefault("on_exhausted", _never)
    return lease_claim(model=type(row), pk=row.pk, worker=worker, **kwargs)


def _silence(row: LeasedWork, settings) -> None:
    """The holder stops beating: its heartbeat is older than the stale limit."""
    old = timezone.now() - timedelta(seconds=settings.MMEVAL_CHUNK_STALE_SECONDS + 5)
    type(row).objects.filter(pk=row.pk).update(heartbeat_at=old)


def test_both_models_wait_and_run_by_the_same_names(work):
    assert work.status == type(work).WAITING
    assert {choice for choice, _ in type(work).Status.choices} >= {type(work).WAITING, LeasedWork.RUNNING}


def test_a_claim_is_exclusive_and_a_silent_holder_is_taken_over_with_a_fresh_token(work, settings):
    held = _claim(work, "w1")
    assert (held.status, held.attempts, held.worker) == (LeasedWork.RUNNING, 1, "w1") and len(held.claim) == 32
    assert _claim(work, "w2") is None  # w1 is alive
    assert lease_heartbeat(model=type(work), pk=work.pk, claim=held.claim)

    _silence(work, settings)
    taken = _claim(work, "w2")
    assert taken.claim != held.claim and taken.attempts == 2
    # The old holder changes nothing any more: no heartbeat, no save, no release, no finish.
    assert not lease_heartbeat(model=type(work), pk=work.pk, claim=held.claim)
    assert not lease_update(row=held, error="late")
    assert not lease_release(row=held)
    assert not lease_finish(row=held, status="failed", error="late and wrong")
    assert lease_finish(row=taken, status="done")
    stored = type(work).objects.get(pk=work.pk)
    assert (stored.status, stored.error, stored.worker) == ("done", "", "w2") and stored.finished_at is not None
    assert _claim(work, "w3") is None  # done stays done


def test_after_the_attempts_limit_the_work_is_given_up(work, settings):
    settings.MMEVAL_CHUNK_MAX_ATTEMPTS = 2
    given_up = []
    for worker in ("w1", "w2"):
        assert _claim(work, worker) is not None
        _silence(work, settings)
    assert _claim(work, "w3", on_exhausted=lambda row, now: given_up.append((row.pk, row.attempts))) is None
    assert given_up == [(work.pk, 2)]


def test_a_release_spends_no_attempt_and_never_goes_below_zero(work):
    held = _claim(work, "w1")
    assert lease_release(row=held) and held.status == type(work).WAITING and held.claim == ""
    assert type(work).objects.get(pk=work.pk).attempts == 0
    held = _claim(work, "w1")
    assert lease_update(row=held, attempts=0)  # work that moves on resets its attempts (a report's stage)
    assert lease_release(row=held)
    stored = type(work).objects.get(pk=work.pk)
    assert (stored.status, stored.attempts, stored.claim) == (type(work).WAITING, 0, "")


def test_the_stale_reset_hands_silent_work_out_again_and_keeps_the_attempt(work, settings):
    held = _claim(work, "w1")
    rows = type(work).objects.filter(pk=work.pk)
    assert lease_stale_reset(rows=rows, now=timezone.now()) == []  # alive
    _silence(work, settings)
    assert lease_stale_reset(rows=rows, now=timezone.now()) == [work.pk]
    stored = rows.get()
    assert (stored.status, stored.claim, stored.attempts) == (type(work).WAITING, "", 1)
    assert not lease_heartbeat(model=type(work), pk=work.pk, claim=held.claim)


def test_the_dispatch_stamp(work):
    before = timezone.now()
    lease_dispatch_stamp(model=type(work), pks=[work.pk])
    assert type(work).objects.get(pk=work.pk).dispatched_at >= before


def _a_backend_waits_on_a_lock(*, timeout: float) -> bool:
    """Whether another backend of this database is seen waiting on a lock within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_the_row_lock_instead_of_skipping_the_row(work):
    """The dispatcher stamps the row right after publishing, under a row lock; a claim that
    arrives meanwhile must wait and then take the row (SKIP LOCKED would drop the message)."""
    locked, release, result = threading.Event(), threading.Event(), {}

    def dispatcher() -> None:
        try:
            with transaction.atomic():
                type(work).objects.select_for_update().get(pk=work.pk)
                locked.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def claimer() -> None:
        try:
            result["row"] = _claim(work, "w1")
        finally:
            connection.close()

    holder = threading.Thread(target=dispatcher)
    holder.start()
    assert locked.wait(timeout=60)
    taker = threading.Thread(target=claimer)
    taker.start()
    # The claimer's backend shows up waiting on a lock (an event, not a clock); it has not
    # skipped the row, so it is still running.
    assert _a_backend_waits_on_a_lock(timeout=60)
    assert taker.is_alive() and "row" not in result
    release.set()
    holder.join(timeout=60)
    taker.join(timeout=60)
    assert result["row"] is not None and result["row"].worker == "w1"
