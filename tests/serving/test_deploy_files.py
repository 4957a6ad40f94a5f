"""compose.yaml, the Dockerfile and gunicorn.conf.py, checked without a Docker engine: the
files parse, every service runs a command that exists here with files that exist, and the
worker, beat and health-check commands are run for real against Redis."""

from __future__ import annotations

import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from .conftest import REPO, production_env, stop

APP_SERVICES = ("migrate", "web", "worker", "gpu-worker", "beat")
ENV = {"SECRET_KEY": "s" * 50, "ALLOWED_HOSTS": "study.example.org", "POSTGRES_PASSWORD": "pw"}


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution for the forms compose.yaml uses."""

    def value(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op == ":?" and not env.get(name):
            raise KeyError(f"compose would stop: {name}: {arg}")
        return env.get(name) or (arg if op == ":-" else "")

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:\?|:-)([^}]*))?\}", value, text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(_interpolate((REPO / "compose.yaml").read_text(), ENV))


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_compose_stops_without_the_required_variables():
    for name in ENV:
        with pytest.raises(KeyError, match=name):
            _interpolate((REPO / "compose.yaml").read_text(), {k: v for k, v in ENV.items() if k != name})


def test_every_service_is_there_with_a_health_check_and_its_volumes(compose):
    services = compose["services"]
    assert set(services) == {*APP_SERVICES, "db", "redis"}
    for name in ("web", "worker", "gpu-worker", "beat", "db", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert {"pgdata", "media", "redis-data", "beat"} <= set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    for name in ("web", "worker", "gpu-worker"):  # media shared by web and workers
        assert "media:/data/media" in services[name]["volumes"]
        assert services[name]["environment"]["MEDIA_ROOT"] == "/data/media"


def test_app_services_build_the_dockerfile_here_in_production_mode(compose):
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile, re.M)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert (REPO / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        env = service["environment"]
        assert env["MMEVAL_PRODUCTION"] == "1" and env["DATABASE_URL"].startswith("postgres://mmeval:pw@db:5432/")
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert compose["services"]["web"]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert compose["services"]["gpu-worker"]["build"]["args"]["TORCH_VARIANT"].startswith("cu")


def test_queues_match_the_settings_and_the_gpu_worker_takes_one_task_at_a_time(compose):
    assert (settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_GPU_QUEUE) == ("mmeval", "mmeval-gpu")
    worker, gpu = _command(compose["services"]["worker"]), _command(compose["services"]["gpu-worker"])
    assert worker[worker.index("-Q") + 1] == "mmeval"
    assert gpu[gpu.index("-Q") + 1] == "mmeval-gpu"
    assert gpu[gpu.index("--concurrency") + 1] == "1" and gpu[gpu.index("--prefetch-multiplier") + 1] == "1"
    devices = compose["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert compose["services"]["gpu-worker"]["environment"]["MMEVAL_DEVICE"] == "cuda"


def test_web_command_loads_the_app_with_gunicorn_conf(compose):
    command = _command(compose["services"]["web"])
    assert command[:3] == ["gunicorn", "-c", "gunicorn.conf.py"] and (REPO / command[2]).is_file()

    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", *command[1:]],
        cwd=REPO,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr


def test_migrate_command_is_a_management_command(compose):
    command = _command(compose["services"]["migrate"])
    assert command[:2] == ["python", "manage.py"]
    from django.core.management import get_commands

    assert command[2] in get_commands()


def _wait_for_line(process: subprocess.Popen, pattern: str, timeout: float = 90) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    pytest.fail(f"no line matching {pattern!r}:\n{''.join(seen[-30:])}")


def _app_command(compose, service: str) -> list[str]:
    command = _command(compose["services"][service])
    assert command[0] == "celery"
    return [sys.executable, "-m", "celery", *command[1:]]


@pytest.mark.worker
def test_gpu_worker_command_starts_and_answers_its_health_check(compose):
    env = production_env(CELERY_BROKER_URL="redis://127.0.0.1:6379/13")
    process = subprocess.Popen(
        _app_command(compose, "gpu-worker"),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_line(process, r"gpu@\S+ ready\.")
        health = compose["services"]["gpu-worker"]["healthcheck"]["test"][1]
        health = health.replace("$HOSTNAME", socket.gethostname()).replace("celery ", f"{sys.executable} -m celery ", 1)

        result = subprocess.run(health, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        stop(process)


@pytest.mark.worker
def test_beat_command_writes_the_schedule_its_health_check_looks_for(compose, tmp_path):
    command = [part.replace("/data/beat", str(tmp_path)) for part in _app_command(compose, "beat")]
    env = production_env(CELERY_BROKER_URL="redis://127.0.0.1:6379/13")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_line(process, r"beat: Starting")
        health = compose["services"]["beat"]["healthcheck"]["test"][1].replace("/data/beat", str(tmp_path))
        deadline = time.monotonic() + 30
        while subprocess.run(health, shell=True).returncode != 0:
            assert time.monotonic() < deadline, "beat wrote no schedule file"
            time.sleep(0.5)
    finally:
        stop(process)
    assert any(Path(tmp_path).iterdir())


def test_gunicorn_conf_reads_its_knobs_from_the_environment(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.2")
    conf = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    assert (conf["workers"], conf["forwarded_allow_ips"], conf["timeout"]) == (3, "10.0.0.2", 120)
    assert conf["access_log_format"].endswith("%(M)sms")  # request time

    monkeypatch.delenv("WEB_CONCURRENCY")
    assert runpy.run_path(str(REPO / "gunicorn.conf.py"))["workers"] == 2 * len(os.sched_getaffinity(0))
