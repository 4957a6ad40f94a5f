"""Precompute survives a broker that refuses or hangs, and runs without one (the embedded
mode's background run). Apart from test_faults.py so that xdist can run the two halves of
these slow fault tests on different workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from django.test import Client

from annotations.models import PrecomputeChunk, PrecomputeJob, Study
from annotations.services.precompute import precompute_watchdog
from tests.builders.demo_study import demo_study
from tests.integration.conftest import REPO, _database_url
from tests.integration.test_faults import IG_ONLY
from tests.integration.test_worker import SMALL, wait_for_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


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

    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=IG_ONLY, **SMALL)
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
    study = demo_study(owner=alice, jsonl=demo_jsonl, conditions=IG_ONLY, **SMALL)
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
