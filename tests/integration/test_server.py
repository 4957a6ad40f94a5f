"""The study's guarantees hold on the production server path: gunicorn (3 sync worker
processes, persistent database connections, sessions in the shared Redis cache) serving
simulated participants over real HTTP, all at once (``benchmarks.loadtest``), while every
database connection of the server is cut once in the middle of the run.

Checked afterwards, from the database: no (arm, item) has more answers than raters, no one
got an item twice, and every answer the server acknowledged is stored exactly once, as sent,
with nothing stored that was not acknowledged. Everyone either finished or was told the study
is full; the only 5xx allowed is the 503 "please retry" page, which the participants follow.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count

from annotations.models import Assignment, Participant, Response
from benchmarks.loadtest import LoadReport, run_load
from tests.builders.studies import build_study
from tests.integration.conftest import REPO, _database_url
from tests.isolation import media_root  # noqa: F401  (autouse: the server reads the same MEDIA_ROOT)

N_PARTICIPANTS = 24
N_ITEMS, PER_PARTICIPANT, RATERS = 10, 3, 2  # 2 arms x 10 items x 2 raters = 40 slots: about 13 people fit
RUN_LIMIT_S = 150


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gunicorn_server(transactional_db, media_root, tmp_path):  # noqa: F811
    """``python -m gunicorn -w 3`` on a free loopback port, on the test database."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict["NAME"]),
        "MEDIA_ROOT": str(media_root),
        "DB_CONN_MAX_AGE": "60",
        "CACHE_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
        # The load comes from one address: entry limits are for a real crowd.
        "MMEVAL_ENTRY_ADDRESS_LIMIT": "0",
        "MMEVAL_ENTRY_PLATFORM_ID_LIMIT": "0",
        "MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT": "100",
    }
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "3", "-b", f"127.0.0.1:{port}", "--timeout", "60", "mmeval.wsgi"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not listen:\n{log_path.read_text()}")
            time.sleep(0.2)
    process.url, process.log_path = f"http://127.0.0.1:{port}", log_path
    yield process
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _cut_server_connections() -> int:
    """pg_terminate_backend of every other connection to the test database: the server's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_caps_and_answers_hold_under_gunicorn_through_a_database_cut(alice, tmp_path, gunicorn_server):
    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=N_ITEMS,
        items_per_participant=PER_PARTICIPANT,
        raters_per_item=RATERS,
        learning_items=1,
        attention_checks=1,
        pretest=True,
        survey=True,
        name="served",
    )
    report = LoadReport()
    load = threading.Thread(
        target=lambda: asyncio.run(
            run_load(
                url=gunicorn_server.url,
                study=study.public_id,
                participants=N_PARTICIPANTS,
                duration_s=RUN_LIMIT_S,
                walks_per_participant=1,
                seed=5,
                timeout_s=30,
                retries=8,
                report=report,
            )
        ),
        daemon=True,
    )
    load.start()
    # Mid-run: once some answers are in, cut every connection the server holds.
    deadline = time.monotonic() + 60
    while load.is_alive() and len(report.acknowledged) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert load.is_alive(), "the run ended before the cut"
    cut = _cut_server_connections()
    load.join(timeout=RUN_LIMIT_S + 30)
    assert not load.is_alive(), "the simulated participants did not finish"

    log = gunicorn_server.log_path.read_text()
    assert cut >= 1, "no server connection was there to cut"
    assert report.problems == [], report.problems[:5]
    assert set(report.outcomes) <= {"done", "full"} and report.outcomes["done"] >= 40 // PER_PARTICIPANT - 1, (
        report.outcomes
    )
    assert report.outcomes["full"] > 0, "the study should have filled up"
    statuses = Counter(code for stats in report.routes.values() for code in stats.errors)
    assert set(statuses) <= {"503", "connection"}, (statuses, log[-3000:])
    responses = Response.objects.filter(participant__study=study)
    # Caps: no (arm, item) has more test answers than raters.
    per_cell = (
        responses.filter(phase="test", is_attention_check=False).values("condition", "item").annotate(n=Count("id"))
    )
    assert per_cell and max(row["n"] for row in per_cell) <= RATERS
    # No repeats, in leases or answers.
    leases = list(Assignment.objects.filter(participant__study=study).values_list("participant", "item", "phase"))
    assert len(leases) == len(set(leases))
    answered = list(responses.values_list("participant", "item", "phase"))
    assert len(answered) == len(set(answered))
    # Every acknowledged answer stored exactly once, as sent; nothing stored unacknowledged.
    acknowledged = {(a.assignment, a.guess, a.confidence) for a in report.acknowledged}
    assert len(acknowledged) == len(report.acknowledged)
    stored = {
        (str(uuid), guess, confidence)
        for uuid, guess, confidence in responses.values_list("assignment__public_id", "guess", "confidence")
    }
    assert stored == acknowledged and responses.count() == len(stored)
    # Whoever finished is done in the database too, with every lease answered.
    finished = Participant.objects.filter(study=study, phase=Participant.Phase.DONE)
    assert finished.count() == report.outcomes["done"]
    assert not Assignment.objects.filter(participant__in=finished).exclude(status="answered").exists()


@pytest.mark.parametrize(
    "url", ["http://example.com:8000", "https://127.0.0.1:8000", "http://10.0.0.1/", "ftp://localhost/"]
)
def test_the_load_test_only_loads_this_machine(url):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="only http://127.0.0.1"):
        call_command("loadtest", url=url, study="anything", participants=1, duration=1)


@pytest.mark.django_db(transaction=True)
def test_the_floor_run_prints_the_server_cpu_of_requests_that_do_no_work(gunicorn_server):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "loadtest", url=gunicorn_server.url, floor=True, duration=1, server_pids=[gunicorn_server.pid], stdout=out
    )

    rows = re.findall(r"^(health check|robots\.txt) .*? +(\d+) +(\d+) +(\d+\.\d\d) +(\d+\.\d\d)$", out.getvalue(), re.M)
    assert [row[0] for row in rows] == ["health check", "robots.txt"], out.getvalue()
    # Each of the 16 clients has at least its first answer; the CPU is read in clock ticks (10 ms).
    assert all(int(requests) >= 16 and float(server_ms) >= 0 for _, requests, _, server_ms, _ in rows), out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_load_test_command_prints_a_line_per_route(alice, tmp_path, gunicorn_server):
    import io
    import json

    from django.core.management import call_command

    study = build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=8,
        items_per_participant=2,
        raters_per_item=20,
        learning_items=1,
        survey=True,
        name="loaded",
    )
    out, numbers = io.StringIO(), tmp_path / "numbers.json"
    call_command(
        "loadtest",
        url=gunicorn_server.url,
        study=study.public_id,
        participants=4,
        walks_per_participant=1,
        duration=RUN_LIMIT_S,  # a bound: the run ends when the four walks do
        json=str(numbers),
        server_pids=[gunicorn_server.pid],
        database=connection.settings_dict["NAME"],
        stdout=out,
    )
    table = out.getvalue()
    for route in (
        "entry GET",
        "consent POST",
        "instructions POST",
        "item GET",
        "learn POST",
        "answer POST",
    ):
        assert re.search(rf"^{route} +\d+ ", table, re.M), table
    assert "media GET" not in table  # the pages carry their pictures (issue 22)
    assert re.search(r"^all +\d+ +\d+\.\d", table, re.M)
    for process in ("gunicorn", "postgres", "load generator"):
        assert re.search(rf"^{process} CPU \d+\.\d s: \d+\.\d\d ms per request", table, re.M), table
    summary = json.loads(numbers.read_text())
    # Every request belonged to one of the four walks, and each walk asked for its pages only.
    assert summary["outcomes"] == {"done": 4} and summary["requests_per_walk"] == summary["requests"] / 4
    assert re.search(rf"^completed walks 4 \(.*\), {summary['requests'] / 4:.1f} requests per", table, re.M), table
    assert summary["cpu_s"]["gunicorn"] > 0
    assert summary["requests"] > 20 and summary["routes"]["answer POST"]["requests"] > 0
    assert not any(code.startswith("5") for route in summary["routes"].values() for code in route["errors"])
    assert Response.objects.filter(participant__study=study).count() >= summary["acknowledged"] > 0


def test_the_server_cpu_counts_processes_that_ended():
    """``server_cpu_s`` of this process counts the CPU of a child it reaped (what a recycled
    gunicorn worker leaves behind): at least what the kernel reports for that child."""
    import resource

    from benchmarks.loadtest import server_cpu_s

    before = server_cpu_s(server_pids=[os.getpid()])["gunicorn"]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    after = server_cpu_s(server_pids=[os.getpid()])["gunicorn"]
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert child > 10 * tick  # the child did measurable work
    assert after - before >= child - 2 * tick
