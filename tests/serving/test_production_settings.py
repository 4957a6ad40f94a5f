"""Production mode (MMEVAL_PRODUCTION=1) in fresh processes: it refuses to start without its
required variables, naming them, and Django's deployment checklist finds nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, manage, production_env

REQUIRED = ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")


def test_check_deploy_reports_nothing():
    result = manage("check", "--deploy", env=production_env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced).", result.stdout + result.stderr
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_start_fails_naming_the_missing_variable(missing):
    result = manage("check", env=production_env(**{missing: None}))

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.endswith(f"MMEVAL_PRODUCTION=1 needs {missing} set in the environment"), result.stderr
    assert all(other not in last_line for other in REQUIRED if other != missing)


def test_start_fails_naming_every_missing_variable_at_once():
    result = manage("check", env=production_env(SECRET_KEY="", ALLOWED_HOSTS=" ", DATABASE_URL=None))

    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("MMEVAL_PRODUCTION=1 needs SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL set in the environment")
    )


def test_debug_is_refused_in_production():
    result = manage("check", env=production_env(DEBUG="1"))

    assert result.returncode != 0
    assert "DEBUG=1 is not allowed with MMEVAL_PRODUCTION=1" in result.stderr.strip().splitlines()[-1]


def test_without_production_mode_nothing_is_required(tmp_path):
    env = production_env(
        MMEVAL_PRODUCTION=None, SECRET_KEY=None, ALLOWED_HOSTS=None, SECRET_KEY_FILE=str(tmp_path / "secret_key")
    )

    assert manage("check", env=env).returncode == 0


def _database_settings(env: dict[str, str]) -> str:
    code = (
        "from django.conf import settings; db = settings.DATABASES['default']; "
        "print(db.get('CONN_MAX_AGE', 0), db.get('CONN_HEALTH_CHECKS'), db.get('OPTIONS', {}).get('connect_timeout'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "DJANGO_SETTINGS_MODULE": "mmeval.settings"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_database_connections_persist_and_are_checked_before_reuse(tmp_path):
    assert _database_settings(production_env()) == "60 True 5"
    assert _database_settings(production_env(DB_CONN_MAX_AGE="0", DB_CONNECT_TIMEOUT="2")) == "0 True 2"
    sqlite = production_env(MMEVAL_PRODUCTION=None, DATABASE_URL=None, SECRET_KEY_FILE=str(tmp_path / "key"))
    assert _database_settings(sqlite).startswith("0 ")  # SQLite in-process: nothing to keep open


@pytest.mark.parametrize("hosts", [",", " , ,", ""])
def test_an_empty_host_list_is_refused(hosts):
    result = manage("check", env=production_env(ALLOWED_HOSTS=hosts))

    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr.strip().splitlines()[-1], result.stderr


@pytest.mark.parametrize(
    "key", ["abcde", "short-but-not-empty-0123456789", "a" * 80, "ab" * 40], ids=["5", "30", "one-char", "two-chars"]
)
def test_a_weak_secret_key_is_refused_without_showing_it(key):
    result = manage("check", env=production_env(SECRET_KEY=key))

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "SECRET_KEY is too weak" in last_line and "50 characters" in last_line, result.stderr
    assert key not in result.stderr and key not in result.stdout


def test_a_strong_key_of_fifty_characters_is_accepted():
    assert manage("check", env=production_env(SECRET_KEY="abcde" * 10)).returncode == 0


def test_kept_connections_end_when_the_database_host_vanishes():
    """Keepalives and tcp_user_timeout on every Postgres connection; the web role's read
    timeout (mmeval/database.py) is a setting too."""
    code = (
        "from django.conf import settings; o = settings.DATABASES['default']['OPTIONS']; "
        "print(o['keepalives'], o['keepalives_idle'], o['keepalives_interval'], o['keepalives_count'], "
        "o['tcp_user_timeout'], settings.DB_READ_TIMEOUT)"
    )
    env = {**production_env(DB_KEEPALIVES_IDLE="20", DB_READ_TIMEOUT="4"), "DJANGO_SETTINGS_MODULE": "mmeval.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "20", "5", "3", "30000", "4"]
    bad = manage("check", env=production_env(DB_READ_TIMEOUT="soon"))
    assert bad.stderr.strip().splitlines()[-1] == "error: DB_READ_TIMEOUT='soon' is not an integer"
