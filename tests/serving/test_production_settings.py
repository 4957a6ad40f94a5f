"""Production mode (MMEVAL_PRODUCTION=1) in fresh processes: it refuses to start without its
required variables, naming them, and Django's deployment checklist finds nothing."""

from __future__ import annotations

import pytest

from .conftest import manage, production_env

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
    assert result.stderr.strip().splitlines()[-1].endswith(
        "MMEVAL_PRODUCTION=1 needs SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL set in the environment")


def test_debug_is_refused_in_production():
    result = manage("check", env=production_env(DEBUG="1"))

    assert result.returncode != 0
    assert "DEBUG=1 is not allowed with MMEVAL_PRODUCTION=1" in result.stderr.strip().splitlines()[-1]


def test_without_production_mode_nothing_is_required(tmp_path):
    env = production_env(MMEVAL_PRODUCTION=None, SECRET_KEY=None, ALLOWED_HOSTS=None,
                         SECRET_KEY_FILE=str(tmp_path / "secret_key"))

    assert manage("check", env=env).returncode == 0
