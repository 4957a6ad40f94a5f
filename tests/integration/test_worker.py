"""Precompute through real Celery worker processes on Redis and Postgres: chunks, their
redelivery, a failing adapter, and the spec command."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from annotations.models import Explanation, PrecomputeChunk, PrecomputeJob, Prediction, Study
from annotations.selectors.precompute import job_progress
from annotations.selectors.studies import study_explanation_targets
from annotations.services.precompute import precompute_job_create, precompute_start
from tests.builders.demo_study import demo_study
from workers.pipeline import precompute_run
from workers.tasks import precompute_advance_task, precompute_chunk_task

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Where the study's size proves nothing (which job runs, how a failure or a fault shows): a few items and
# candidates, so the worker has fewer explanation rows to draw.
SMALL = {"n_items": 4, "items_per_participant": 2, "n_candidates": 2}


def wait_for_job(job_id: int, timeout: float = 300) -> PrecomputeJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = PrecomputeJob.objects.get(pk=job_id)
        if job.status in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED):
            return job
        time.sleep(0.5)
    progress = job_progress(job=job)
    raise AssertionError(
        f"job {job_id} did not finish in {timeout} s (last status {job.status}, {progress['done']}/{progress['total']})"
    )


def wait_until_drained(worker, queue: str, timeout: float = 120) -> None:
    """Until the queue holds no message and the worker runs no task."""
    from mmeval.celery import app

    redis = app.connection_for_write().default_channel.client
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = app.control.inspect(destination=[worker.name], timeout=2).active() or {}
        if redis.llen(queue) == 0 and not any(active.values()):
            return
        time.sleep(0.3)
    raise AssertionError(f"the worker did not drain {queue} in {timeout} s")


def test_worker_precomputes_predictions_and_explanations(celery_worker_process, alice, demo_jsonl, settings):
    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = 16  # several chunks per stage
    study = demo_study(owner=alice, jsonl=demo_jsonl)
    job = precompute_start(study=study)
    job = wait_for_job(job.pk)

    assert job.status == PrecomputeJob.Status.DONE, job.error
    progress = job_progress(job=job)
    assert progress["done"] == progress["total"] > 0
    n_dataset = study.dataset.items.count()
    assert {p["part"]: (p["done"], p["total"]) for p in progress["parts"]} == {
        "predictions": (n_dataset, n_dataset),
        "attribution": (study.study_items.count(),) * 2,
    }
    chunks = PrecomputeChunk.objects.filter(job=job)
    assert chunks.filter(stage="predictions").count() == -(-n_dataset // 16)
    assert set(chunks.values_list("status", flat=True)) == {"done"}
    study.refresh_from_db()
    assert study.status == Study.Status.READY
    assert Prediction.objects.filter(model=study.model).count() == n_dataset
    targets = study_explanation_targets(study=study)
    expected = sum(len(labels) for labels in targets.values())
    # Every pool item, each for its candidates: at most 4, from its valid answers (2 for yes/no, 3 shapes).
    assert len(targets) == study.study_items.count()
    assert {len(labels) for labels in targets.values()} <= {2, 3, 4} and expected > 2 * len(targets)
    done = Explanation.objects.filter(model=study.model, status=Explanation.Status.DONE)
    assert done.count() == expected
    assert all(e.image_view and e.token_view for e in done)
    stored = {(e.pk, e.arrays_file, e.image_view) for e in done}

    # Every message delivered again (acks_late after a lost worker), twice: nothing is
    # computed or stored again.
    for chunk in chunks:
        precompute_chunk_task.delay(chunk.pk)
        precompute_chunk_task.delay(chunk.pk)
    precompute_advance_task.delay(job.pk)
    wait_until_drained(celery_worker_process, job.queue)
    assert Prediction.objects.filter(model=study.model).count() == n_dataset
    assert {(e.pk, e.arrays_file, e.image_view) for e in Explanation.objects.filter(model=study.model)} == stored

    # Precompute again: the new job finds every row and plans no chunk.
    rerun = wait_for_job(precompute_start(study=Study.objects.get(pk=study.pk)).pk)
    assert rerun.status == PrecomputeJob.Status.DONE and not rerun.chunks.exists()
    assert Explanation.objects.filter(model=study.model).count() == expected


def test_a_second_start_reuses_the_open_job(celery_worker_process, alice, demo_jsonl):
    study = demo_study(owner=alice, jsonl=demo_jsonl, **SMALL)
    first = precompute_start(study=study)
    second = precompute_start(study=Study.objects.get(pk=study.pk))
    assert second.pk == first.pk
    assert wait_for_job(first.pk).status == PrecomputeJob.Status.DONE
    assert PrecomputeJob.objects.filter(study=study).count() == 1


def test_failing_adapter_fails_the_job_and_shows_the_traceback(celery_worker_process, alice, demo_jsonl):
    study = demo_study(
        owner=alice, jsonl=demo_jsonl, adapter_path="tests.integration.adapters:GradientlessAdapter", **SMALL
    )
    job = wait_for_job(precompute_start(study=study).pk)

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


def test_an_adapter_that_cannot_predict_fails_the_job_at_once(celery_worker_process, alice, demo_jsonl):
    study = demo_study(owner=alice, jsonl=demo_jsonl, adapter_path="tests.integration.adapters:BrokenAfterCheckAdapter")
    job = wait_for_job(precompute_start(study=study).pk)

    assert job.status == PrecomputeJob.Status.FAILED
    assert "deliberately broken" in job.error and "Traceback" in job.error
    assert not Explanation.objects.filter(model=study.model).exists()
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_precompute_rerun_in_process_is_idempotent(alice, demo_jsonl):
    study = demo_study(owner=alice, jsonl=demo_jsonl, **SMALL)
    first = precompute_job_create(study=study)
    assert precompute_run(job_id=first.pk)["status"] == "done"
    counts = (Prediction.objects.count(), Explanation.objects.count())
    assert min(counts) > 0

    again = precompute_job_create(study=Study.objects.get(pk=study.pk))
    assert precompute_run(job_id=again.pk)["status"] == "done"
    assert precompute_run(job_id=again.pk)["status"] == "done"  # a finished job is left as it is

    assert (Prediction.objects.count(), Explanation.objects.count()) == counts


SPEC = """
name: Spec study
dataset: shapes
model: fusion
seed: 4
arms:
  - {name: baseline, views: []}
  - {name: shares, views: [share, heatmap]}
  - {name: pairs, views: [top_pairs]}
items:
  n: 4
  per_participant: 2
  raters_per_item: 1
  filters: {confidence: [0.0, 1.0], interaction_strength: [0.0, 1.0]}
candidates: {mode: top_k, k: 2, distractors: 1}
phases: {learning_items: 1, survey: true}
quality: {attention_checks: 1, min_rt_ms: 500, exclusion_rules: {max_attention_failures: 0}}
codes: {completed: SPECDONE, screened_out: SPECOUT}
"""


def _spec_setup(alice, demo_jsonl, tmp_path):
    from annotations.services.datasets import dataset_import
    from annotations.services.registry import registered_model_create
    from tests.builders.demo_study import DEMO_ADAPTER

    dataset = dataset_import(owner=alice, name="shapes", jsonl_path=demo_jsonl)
    registered_model_create(owner=alice, name="fusion", adapter_path=DEMO_ADAPTER, check_dataset=dataset)
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def _check_spec_study() -> Study:
    from annotations.models import StudyItem
    from annotations.selectors.precompute import MODALITY_INTERACTION

    study = Study.objects.get(name="Spec study")
    assert study.status == Study.Status.LIVE
    assert (study.completion_code, study.screened_out_code, study.n_distractors) == ("SPECDONE", "SPECOUT", 1)
    assert {c.name: c.views for c in study.conditions.all()} == {
        "baseline": [],
        "shares": ["share", "heatmap"],
        "pairs": ["top_pairs"],
    }
    # The strength filter needed every item's 2x2 modality interaction.
    assert (
        Explanation.objects.filter(model=study.model, method=MODALITY_INTERACTION).count()
        == study.dataset.items.count()
    )
    targets = study_explanation_targets(study=study)
    assert len(targets) == StudyItem.objects.filter(study=study).count()
    predictions = Prediction.objects.filter(model=study.model, item_id__in=list(targets)).select_related("item")
    for prediction in predictions:
        # k + 1 distractor, within the item's valid answers (a yes/no item has two) and its model answer
        offered = set(prediction.item.choices) | {prediction.label}
        assert len(targets[prediction.item_id]) == min(3, len(offered))
    for method, view in (("integrated_gradients", "share"), ("second_order", "top_pairs")):
        rows = Explanation.objects.filter(model=study.model, method=method, status="done")
        assert {(r.item_id, r.target_label) for r in rows} == {
            (i, label) for i, labels in targets.items() for label in labels
        }
        assert all(r.image_view and r.extra_views.get(view) for r in rows)
    return study


def test_launch_study_command_runs_in_process(alice, demo_jsonl, tmp_path, capsys):
    from django.core.management import call_command

    spec = _spec_setup(alice, demo_jsonl, tmp_path)
    call_command("launch_study", str(spec), "--owner", "alice")

    study = _check_spec_study()
    out = capsys.readouterr().out
    assert "The study is live." in out and f"/s/{study.public_id}/" in out
    # Precompute again: every row is found, nothing is computed or stored twice.
    counts = Explanation.objects.count()
    Study.objects.filter(pk=study.pk).update(status=Study.Status.READY)
    rerun = precompute_job_create(study=Study.objects.get(pk=study.pk))
    assert precompute_run(job_id=rerun.pk)["status"] == "done"
    assert Explanation.objects.count() == counts


def test_launch_study_command_via_the_workers(celery_worker_process, alice, demo_jsonl, tmp_path):
    from django.core.management import call_command

    spec = _spec_setup(alice, demo_jsonl, tmp_path)
    call_command("launch_study", str(spec), "--owner", "alice", "--via-task", "--timeout", "300")
    _check_spec_study()


def test_beat_task_on_the_worker_reclaims_expired_leases(celery_worker_process, alice, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from annotations.models import Assignment, Slot
    from tests.builders.studies import build_study, enter_and_start
    from workers.tasks import reclaim_expired_leases

    study = build_study(
        alice, tmp_path, n_dataset_items=4, n_items=2, items_per_participant=2, raters_per_item=1, name="beat-worker"
    )
    gone, _stays = enter_and_start(study, "gone"), enter_and_start(study, "stays")  # both arms full
    Assignment.objects.filter(participant=gone).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    reclaim_expired_leases.delay()  # what celery beat sends every minute

    deadline = time.monotonic() + 60
    while Assignment.objects.filter(participant=gone, status="active").exists():
        assert time.monotonic() < deadline, "the worker did not reclaim the leases"
        time.sleep(0.3)
    assert not Slot.objects.filter(assignment__participant=gone).exists()
    newcomer = enter_and_start(study, "next")
    assert newcomer.condition_id == gone.condition_id
    assert set(newcomer.assignments.values_list("item_id", flat=True)) == set(
        gone.assignments.values_list("item_id", flat=True)
    )
