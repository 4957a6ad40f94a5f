"""Precompute survives faults: workers killed outright, several workers at once, chunks past
the soft time limit, a broker that refuses or hangs, and the embedded mode's background run.

Each test runs its own worker processes on queues of its own, so the session's worker never
takes their chunks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from django.test import Client

from annotations.models import Explanation, PrecomputeChunk, PrecomputeJob, Prediction, Study
from annotations.selectors.studies import study_explanation_targets
from annotations.services.precompute import precompute_start, precompute_watchdog
from annotations.services.studies import ConditionSpec
from tests.builders.demo_study import demo_study
from tests.integration.conftest import REPO, _database_url, start_worker, stop_worker
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
    """The real billiard soft time limit (prefork pool): a chunk of 8 items never finishes
    (SlowAdapter), so it is split and its halves of 4 finish; the job still completes. The
    limit is far above what a chunk of 4 takes even on a loaded machine."""
    from workers.engine.demo.data import generate_dataset

    settings.MMEVAL_PRECOMPUTE_BATCH_SIZE = 8
    workers(queues, pool="prefork", MMEVAL_TASK_SOFT_TIME_LIMIT=20, MMEVAL_TASK_TIME_LIMIT=120)
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


def _dead_broker(kind: str) -> tuple[str, socket.socket | None]:
    """A broker URL that refuses connections, or one that accepts and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if kind == "refuses":
        listener.close()
        return f"redis://127.0.0.1:{port}/0", None
    listener.listen(64)  # the kernel completes handshakes; nobody ever reads or replies
    return f"redis://127.0.0.1:{port}/0", listener


@pytest.mark.parametrize("kind", ["refuses", "hangs"])
def test_a_broker_that_refuses_or_hangs(kind, alice, demo_jsonl, tmp_path, celery_worker_process):
    """In a web process whose broker is dead: the researcher gets a clear message within 5 s,
    the job is kept (not orphaned) and handed over once the queue answers; participants of a
    live study are not affected."""
    from django.conf import settings

    from tests.builders.studies import build_study

    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=IG_ONLY)
    live = build_study(
        alice, tmp_path, name="live-during-outage", n_items=4, items_per_participant=2, raters_per_item=2
    )
    broker, listener = _dead_broker(kind)
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DATABASE_URL": _database_url(settings.DATABASES["default"]["NAME"]),
    }
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.integration.broker_down_client",
                str(study.pk),
                "alice",
                "alice-pass-123",
                live.public_id,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if listener is not None:
            listener.close()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])

    # The page came back at all (the client's own bound is 120 s, far past the broker timeout):
    # publishing gave up instead of hanging. How fast is the benchmarks' business, not a test's.
    assert result["status"] == 200
    assert "The task queue did not accept the work" in result["page"]
    job = PrecomputeJob.objects.get(study=study)
    assert job.status == PrecomputeJob.Status.QUEUED and "did not accept" in job.dispatch_error
    assert Study.objects.get(pk=study.pk).status == Study.Status.PRECOMPUTING
    assert result["answered"] == 2 and not [s for s in result["participant_statuses"] if s >= 500]

    # The queue answers again (this process's broker is the real one): the watchdog hands the
    # same job over and the session's worker finishes it. No second job appears.
    precompute_watchdog()
    job = wait_for_job(job.pk)
    assert job.status == PrecomputeJob.Status.DONE and not job.dispatch_error
    assert PrecomputeJob.objects.filter(study=study).count() == 1


def test_embedded_mode_precomputes_in_the_background(alice, demo_jsonl, settings):
    """No broker: the button returns at once and a background thread of the web process
    computes; no chunk runs in the request's thread."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=IG_ONLY)
    client = Client()
    client.force_login(alice)

    response = client.post(f"/studies/{study.pk}/precompute/")

    assert response.status_code == 302
    job = PrecomputeJob.objects.get(study=study)
    assert job.runner == PrecomputeJob.Runner.INLINE
    job = wait_for_job(job.pk)
    assert job.status == PrecomputeJob.Status.DONE, job.error
    workers = set(PrecomputeChunk.objects.filter(job=job).values_list("worker", flat=True))
    assert workers and all(w.endswith(f"/precompute-{job.pk}") for w in workers), workers
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "Launch study" in page
