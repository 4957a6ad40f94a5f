"""A real Celery worker (a subprocess on Redis, against the test database) and demo fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def _database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{name}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start ``celery worker`` as its own process, as production runs it, on the test DB."""
    from mmeval.celery import app

    if settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.fail("the worker tests need CELERY_BROKER_URL (./run test sets it)")
    with django_db_blocker.unblock():
        test_db = connection.settings_dict["NAME"]
    app.connection_for_write().default_channel.client.flushdb()  # stale messages of earlier runs
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {**os.environ, "DATABASE_URL": _database_url(test_db), "MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "PYTHONUNBUFFERED": "1"}
    queues = f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.CELERY_GPU_QUEUE}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mmeval", "worker", "-Q", queues, "--pool", "solo",
             "-n", name, "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Celery worker exited:\n{log_path.read_text()}")
        if app.control.ping(destination=[name], timeout=1.0):
            break
    else:
        process.kill()
        pytest.fail(f"the Celery worker did not answer a ping:\n{log_path.read_text()}")
    process.log_path, process.name = log_path, name
    yield process
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(autouse=True)
def allow_test_adapters(settings):
    """These tests register adapters defined in tests/ (deliberately failing ones among them)."""
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
