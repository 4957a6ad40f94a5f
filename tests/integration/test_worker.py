"""Precompute through a real Celery worker process on Redis and Postgres."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from annotations.models import Explanation, PrecomputeJob, Prediction, Study
from annotations.services.studies import precompute_job_create, study_explanation_targets
from tests.integration.builders import demo_study
from workers.pipeline import precompute_run
from workers.tasks import precompute_study

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait_for_job(job_id: int, timeout: float = 300) -> PrecomputeJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = PrecomputeJob.objects.get(pk=job_id)
        if job.status in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s (last status {job.status}, {job.done}/{job.total})")


def test_worker_precomputes_predictions_and_explanations(celery_worker_process, alice, demo_jsonl):
    study = demo_study(owner=alice, jsonl=demo_jsonl)
    job = precompute_job_create(study=study)

    precompute_study.delay(job.pk)
    job = _wait_for_job(job.pk)

    assert job.status == PrecomputeJob.Status.DONE, job.error
    assert job.done == job.total > 0
    study.refresh_from_db()
    assert study.status == Study.Status.READY
    n_dataset = study.dataset.items.count()
    assert Prediction.objects.filter(model=study.model).count() == n_dataset
    targets = study_explanation_targets(study=study)
    expected = sum(len(labels) for labels in targets.values())
    assert expected == study.study_items.count() * 4
    done = Explanation.objects.filter(model=study.model, status=Explanation.Status.DONE)
    assert done.count() == expected
    assert all(e.image_view and e.token_view for e in done)

    # A redelivered task (acks_late after a lost worker) stores nothing twice.
    rerun = PrecomputeJob.objects.create(study=study)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.PRECOMPUTING)
    precompute_study.delay(rerun.pk)
    precompute_study.delay(rerun.pk)
    assert _wait_for_job(rerun.pk).status == PrecomputeJob.Status.DONE
    assert Prediction.objects.filter(model=study.model).count() == n_dataset
    assert Explanation.objects.filter(model=study.model).count() == expected


def test_failing_adapter_fails_the_job_and_shows_the_traceback(celery_worker_process, alice, demo_jsonl):
    study = demo_study(owner=alice, jsonl=demo_jsonl, adapter_path="tests.integration.adapters:GradientlessAdapter")
    job = precompute_job_create(study=study)

    precompute_study.delay(job.pk)
    job = _wait_for_job(job.pk)

    assert job.status == PrecomputeJob.Status.FAILED
    failed = Explanation.objects.filter(model=study.model, status=Explanation.Status.FAILED)
    assert failed.exists()
    assert "cannot be differentiated" in failed.first().error and "Traceback" in failed.first().error
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT

    client = Client()
    client.force_login(alice)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "explanation(s) failed" in page
    item = failed.first().item
    detail = client.get(f"/studies/{study.pk}/items/{item.pk}/").content.decode()
    assert "cannot be differentiated" in detail and "Traceback" in detail


def test_precompute_rerun_in_process_is_idempotent(alice, demo_jsonl):
    study = demo_study(owner=alice, jsonl=demo_jsonl)
    first = precompute_job_create(study=study)
    assert precompute_run(job_id=first.pk)["status"] == "done"
    counts = (Prediction.objects.count(), Explanation.objects.count())

    again = precompute_job_create(study=Study.objects.get(pk=study.pk))
    assert precompute_run(job_id=again.pk)["status"] == "done"
    assert precompute_run(job_id=again.pk)["status"] == "done"  # a finished job is left as it is

    assert (Prediction.objects.count(), Explanation.objects.count()) == counts
