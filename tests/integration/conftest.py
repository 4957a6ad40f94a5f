"""A real Celery worker (a subprocess on Redis, against the test database) and demo fixtures."""

from __future__ import annotations

import os
import signal
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


def start_worker(
    *,
    queues: str,
    log_path: Path,
    pool: str = "solo",
    beat_schedule: Path | None = None,
    env: dict | None = None,
    timeout: float = 120,
) -> subprocess.Popen:
    """Start ``celery worker`` as its own process (group, so a test can kill it whole), as
    production runs it, on the test database; return once it answers a ping. ``env`` adds
    settings (e.g. MMEVAL_CHUNK_STALE_SECONDS); ``beat_schedule`` runs beat inside it."""
    from mmeval.celery import app

    test_db = connection.settings_dict["NAME"]
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(test_db),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "mmeval",
        "worker",
        "-Q",
        queues,
        "--pool",
        pool,
        "-n",
        name,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]
    if pool == "prefork":
        args += ["--concurrency", "1"]
    if beat_schedule is not None:
        args += ["-B", "--schedule", str(beat_schedule)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Celery worker exited:\n{log_path.read_text()}")
        if app.control.ping(destination=[name], timeout=1.0):
            break
    else:
        stop_worker(process, kill=True)
        pytest.fail(f"the Celery worker did not answer a ping:\n{log_path.read_text()}")
    process.log_path, process.name = log_path, name
    return process


def stop_worker(process: subprocess.Popen, *, kill: bool = False) -> None:
    """Stop a worker and its pool children: SIGTERM (warm shutdown), or SIGKILL of the whole
    process group (a crash)."""
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """One worker on the default and GPU queues for the whole session."""
    from mmeval.celery import app

    if settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.fail("the worker tests need CELERY_BROKER_URL (./run test sets it)")
    app.connection_for_write().default_channel.client.flushdb()  # stale messages of earlier runs
    with django_db_blocker.unblock():
        process = start_worker(
            queues=f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.CELERY_GPU_QUEUE}",
            log_path=tmp_path_factory.mktemp("celery") / "worker.log",
        )
    yield process
    stop_worker(process)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for all the browser test files of a session (each xdist worker):
    starting Playwright's driver and Chromium costs seconds each time. Tests get it through
    ``browser``, each in contexts of its own."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./run test does)")
    # Playwright's sync API runs an event loop in this thread from here to the session's end;
    # Django's ORM calls stay synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium):
    """The session's Chromium; a context a test left open (a failed assertion before its
    ``close``) is closed after it, so no test sees another's cookies or pages."""
    yield chromium
    for context in chromium.contexts:
        context.close()


@pytest.fixture(autouse=True)
def allow_test_adapters(settings):
    """These tests register adapters defined in tests/ (deliberately failing ones among them)."""
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]
