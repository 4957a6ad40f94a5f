"""The production server path for real: collectstatic, then gunicorn with gunicorn.conf.py
in production mode against the test database and Redis, spoken to over HTTP the way the
TLS proxy speaks to it (X-Forwarded-Proto)."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from django.db import connections

from tests.builders.studies import build_study

from .conftest import REPO, free_port, manage, production_env, stop, wait_for_http

# The server uses the test database, which pytest-django creates only for database tests.
pytestmark = pytest.mark.django_db

HOST = "mmeval.test"
HTTPS = {"Host": HOST, "X-Forwarded-Proto": "https"}


def _database_url() -> str:
    db = connections["default"].settings_dict  # pytest-django points it at the test database
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gunicorn")
    env = production_env(
        DATABASE_URL=_database_url(),
        STATIC_ROOT=str(folder / "static"),
        MEDIA_ROOT=str(folder / "media"),
        CELERY_BROKER_URL="redis://127.0.0.1:6379/13",
        GUNICORN_ACCESS_LOG=str(folder / "access.log"),
        WEB_CONCURRENCY="2",
    )
    collected = manage("collectstatic", "--noinput", env=env)
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    process = _start_gunicorn(port, env)
    wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
    yield {"port": port, "access_log": folder / "access.log", "static_root": folder / "static"}
    stop(process)


def _get(server, path: str, headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    try:
        conn.request("GET", path, headers=headers or {"Host": HOST})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def test_the_stylesheet_is_served_compressed_with_a_hashed_name(server):
    status, _, body = _get(server, "/accounts/login/", HTTPS)
    assert status == 200
    href = re.search(r'href="(/static/mmeval/mmeval\.[0-9a-f]{12}\.css)"', body.decode())
    assert href, "the page does not link the collected, hashed stylesheet"

    status, headers, css = _get(server, href.group(1), HTTPS)
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]
    assert b".errorbox" in css

    status, headers, _ = _get(server, href.group(1), {**HTTPS, "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"


def test_health_endpoints_answer_plain_http_on_any_host(server):
    status, headers, body = _get(server, "/healthz", {"Host": "10.0.0.9:8000"})
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    status, _, body = _get(server, "/readyz", {"Host": "10.0.0.9:8000"})
    assert (status, json.loads(body)) == (200, {"status": "ok", "checks": {"database": "ok", "broker": "ok"}})


def test_the_compose_health_check_of_web_passes_against_gunicorn(server):
    check = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["web"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"] and "127.0.0.1:8000/readyz" in check[3]

    result = subprocess.run(
        [sys.executable, "-c", check[3].replace(":8000/", f":{server['port']}/")],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr


def test_plain_http_is_redirected_to_https(server):
    status, headers, _ = _get(server, "/accounts/login/", {"Host": HOST})

    assert status == 301
    assert headers["Location"] == f"https://{HOST}/accounts/login/"


def test_https_pages_carry_hsts_and_secure_cookies(server):
    status, headers, _ = _get(server, "/accounts/login/", HTTPS)

    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    cookie = headers["Set-Cookie"]
    assert "csrftoken=" in cookie and "Secure" in cookie and "SameSite=None" in cookie


@pytest.mark.django_db(transaction=True)
def test_participant_pages_can_be_framed_by_mturk_in_production(server, alice, tmp_path):
    study = build_study(alice, tmp_path, n_dataset_items=8, n_items=4, items_per_participant=2, name="framed")

    status, headers, _ = _get(server, f"/s/{study.public_id}/", HTTPS)

    assert status == 200
    assert "X-Frame-Options" not in headers
    ancestors = headers["Content-Security-Policy"]
    assert ancestors.startswith("frame-ancestors 'self' ")
    assert "https://www.mturk.com" in ancestors and "https://workersandbox.mturk.com" in ancestors


def test_gunicorn_workers_keep_their_database_connections(server):
    def backends() -> set[int]:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return {row[0] for row in cursor.fetchall()}

    for _ in range(10):
        assert _get(server, "/s/no-such-study/", HTTPS)[0] == 404  # looked up in the database
    first = backends()
    for _ in range(20):
        _get(server, "/s/no-such-study/", HTTPS)
    later = backends()

    assert first, "no connection stayed open after the requests"
    assert first <= later and len(later) <= 2  # kept and reused, at most one per worker


def test_access_log_has_the_client_and_the_request_time(server):
    _get(server, "/healthz", {"Host": HOST, "X-Forwarded-For": "203.0.113.7"})

    # gunicorn writes the line after the response has gone out: wait for it (bounded).
    pattern = r'203\.0\.113\.7 127\.0\.0\.1 \[.+\] "GET /healthz HTTP/1\.1" 200 \d+ .* \d+ms$'
    deadline = time.monotonic() + 15
    while True:
        lines = server["access_log"].read_text().splitlines()
        if any(re.match(pattern, line) for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any(re.match(pattern, line) for line in lines), lines[-3:]


def test_gunicorn_refuses_to_start_without_a_required_variable():
    env = production_env(SECRET_KEY=None)

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "mmeval.wsgi",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "mmeval: MMEVAL_PRODUCTION=1 needs SECRET_KEY set in the environment" in result.stderr


def test_readyz_names_a_database_that_does_not_answer(tmp_path):
    env = production_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nothing",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/13",
        DJANGO_SETTINGS_MODULE="mmeval.settings",
    )
    code = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(r.status_code, r.content.decode())"
    )

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    status, body = result.stdout.strip().split(" ", 1)
    assert status == "503", result.stderr
    body = json.loads(body)
    assert body["failed"] == ["database"]
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["database"].startswith("failed: ")


def _start_gunicorn(port: int, env: dict[str, str]) -> subprocess.Popen:
    """The repository's gunicorn on 127.0.0.1:``port``, its output on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "mmeval.wsgi"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _control_socket_pid(path: Path) -> int:
    """The master PID that the control socket at ``path`` reports (waiting for it to appear)."""
    from gunicorn.ctl.client import ControlClient

    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with ControlClient(str(path), timeout=10) as client:
        return client.send_command("show stats")["pid"]


@pytest.fixture
def short_home():
    """A home folder with a short path: a Unix socket's path is limited to 107 bytes, which a
    pytest-xdist worker's ``tmp_path`` can exceed."""
    home = Path(tempfile.mkdtemp(prefix="gh-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_each_instance_on_a_host_has_its_own_control_socket(short_home):
    """Two gunicorn instances on one host (two sites, or a blue/green switch): each answers
    on a control socket of its own, named after its address, so `gunicornc` reaches the
    instance it names and a second start never takes over the first one's socket."""
    env = production_env(HOME=str(short_home), XDG_RUNTIME_DIR=None, WEB_CONCURRENCY="1", GUNICORN_PRELOAD="0")
    ports = [free_port(), free_port()]
    processes = [_start_gunicorn(port, env) for port in ports]
    try:
        for port, process in zip(ports, processes):
            wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        answered = {
            port: _control_socket_pid(short_home / ".gunicorn" / f"mmeval-127.0.0.1-{port}.ctl") for port in ports
        }
    finally:
        for process in processes:
            stop(process)

    assert answered == {port: process.pid for port, process in zip(ports, processes)}


def test_instances_sharing_a_port_each_answer_on_their_own_control_socket(short_home):
    """``GUNICORN_REUSE_PORT=1``: two instances bind one address (two web hosts behind one port,
    docs/BENCHMARKS.md); both serve it, and each control socket carries its master's PID."""
    env = production_env(
        HOME=str(short_home), XDG_RUNTIME_DIR=None, WEB_CONCURRENCY="1", GUNICORN_PRELOAD="0", GUNICORN_REUSE_PORT="1"
    )
    port = free_port()
    processes = []
    try:
        for _ in range(2):
            processes.append(_start_gunicorn(port, env))
            wait_for_http(f"http://127.0.0.1:{port}/healthz", process=processes[-1])
        answered = {
            _control_socket_pid(short_home / ".gunicorn" / f"mmeval-127.0.0.1-{port}-{process.pid}.ctl")
            for process in processes
        }
        assert all(process.poll() is None for process in processes)  # the second bind did not fail
    finally:
        for process in processes:
            stop(process)

    assert answered == {process.pid for process in processes}
