"""Precompute survives faults of its workers: workers killed outright, several workers at
once, chunks past the soft time limit (test_faults_broker.py: a broker that refuses, hangs or
is absent).

Each test runs its own worker processes on queues of its own, so the session's worker never
takes their chunks."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from annotations.models import Explanation, PrecomputeChunk, PrecomputeJob, Prediction, Study
from annotations.selectors.studies import study_explanation_targets
from annotations.services.precompute import precompute_start
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import demo_study
from tests.integration.conftest import start_worker, stop_worker
from tests.integration.test_worker import wait_for_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

IG_ONLY = [ConditionSpec(name="baseline"), ConditionSpec(name="ig", views=["heatmap", "tokens"])]


@pytest.fixture
def queues(settings):
    """A default and a GPU queue for this test only; jobs started here publish to them."""
    suffix = uuid.uuid4().hex[:8]
    settings.CELERY_GPU_QUEUE = f"test-gpu-{suffix}"
    return {"CELERY_DEFAULT_QUEUE": f"test-default-{suffix}", "CELERY_GPU_QUEUE": settings.CELERY_GPU_QUEUE}


@pytest.fixture
def workers(tmp_path):
    """Start workers through this; every one still running is stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(queues: dict, *, pool: str = "solo", beat: bool = False, **env) -> subprocess.Popen:
        process = start_worker(
            queues=",".join(queues.values()),
            log_path=tmp_path / f"worker-{len(started)}.log",
            pool=pool,
            beat_schedule=tmp_path / f"beat-{len(started)}" if beat else None,
            env={**queues, **{k: str(v) for k, v in env.items()}},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        stop_worker(process, kill=True)


def _expected_rows(study: Study) -> int:
    return sum(len(labels) for labels in study_explanation_targets(study=study).values())


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_killed_worker_s_chunk_is_redone_without_a_click(alice, demo_jsonl, queues, workers, settings):
    """kill -9 of the whole worker (parent and pool child) in the middle of a chunk: once a
    worker is back, its beat watchdog finds the silent chunk and hands it out again."""
    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = 16
    fast = {"MMEVAL_CHUNK_HEARTBEAT_SECONDS": 1, "MMEVAL_CHUNK_STALE_SECONDS": 5, "MMEVAL_WATCHDOG_SECONDS": 2}
    first = workers(queues, pool="prefork", **fast)
    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=IG_ONLY)
    job = precompute_start(study=study)

    running = _wait_for(
        lambda: PrecomputeChunk.objects.filter(job=job, stage="attribution", status="running").first(),
        180,
        "an explanation chunk to start",
    )
    stop_worker(first, kill=True)
    time.sleep(1)
    victim = PrecomputeChunk.objects.get(pk=running.pk)
    assert victim.status == "running" and victim.worker == first.name  # nobody knows it died yet

    second = workers(queues, beat=True, **fast)
    job = wait_for_job(job.pk, timeout=240)

    assert job.status == PrecomputeJob.Status.DONE, job.error
    redone = PrecomputeChunk.objects.get(pk=running.pk)
    assert redone.status == "done" and redone.worker == second.name and redone.attempts == 2
    assert Prediction.objects.filter(model=study.model).count() == study.dataset.items.count()
    done = Explanation.objects.filter(model=study.model, status=Explanation.Status.DONE)
    assert done.count() == Explanation.objects.filter(model=study.model).count() == _expected_rows(study)


def test_two_workers_share_a_precompute(alice, demo_jsonl, queues, workers, settings):
    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = 8
    one, two = workers(queues), workers(queues)
    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=IG_ONLY)

    job = wait_for_job(precompute_start(study=study).pk, timeout=300)

    assert job.status == PrecomputeJob.Status.DONE, job.error
    by_worker = {name: PrecomputeChunk.objects.filter(job=job, worker=name).count() for name in (one.name, two.name)}
    assert all(by_worker.values()), by_worker  # both took chunks
    assert sum(by_worker.values()) == PrecomputeChunk.objects.filter(job=job).count()
    assert Explanation.objects.filter(model=study.model, status="done").count() == _expected_rows(study)


def test_a_chunk_past_the_soft_time_limit_is_split_not_failed(alice, tmp_path, queues, workers, settings):
    """The real billiard soft time limit (prefork pool): a predictions chunk of 8 items never
    finishes (SlowAdapter), so it is split and its halves of 4 finish; the job still completes.
    The chunk of 8 waits out the whole limit, so the limit is no longer than needed: the
    chunks after it (the explanation rows, which also warm up the attribution code) finish
    inside it, in a few seconds. One that still overran would be halved again; only a single
    item past the limit would fail the job."""
    from workers.engine.demo.data import generate_dataset

    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = 8
    workers(queues, pool="prefork", MMEVAL_TASK_SOFT_TIME_LIMIT=15, MMEVAL_TASK_TIME_LIMIT=120)
    study = demo_study(
        owner=alice,
        jsonl=generate_dataset(tmp_path / "data", n_items=12, seed=1),
        adapter_path="tests.integration.adapters:SlowAdapter",
        conditions=IG_ONLY,
        n_items=4,
        items_per_participant=2,
        n_candidates=2,
    )

    job = wait_for_job(precompute_start(study=study).pk, timeout=300)

    assert job.status == PrecomputeJob.Status.DONE, job.error
    split = PrecomputeChunk.objects.filter(job=job, status="split")
    assert split.filter(stage="predictions").exists()
    assert all(len(c.item_ids) == 8 for c in split.filter(stage="predictions"))
    assert Prediction.objects.filter(model=study.model).count() == study.dataset.items.count()
    assert Explanation.objects.filter(model=study.model, status="done").count() == _expected_rows(study)
