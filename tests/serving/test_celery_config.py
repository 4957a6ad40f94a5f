"""The Celery worker and beat stop with one line naming a missing or bad production variable,
as gunicorn, ``check`` and ``migrate`` do, instead of a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, production_env


def _celery(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "mmeval", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", [("worker", "--pool", "solo"), ("beat",)], ids=["worker", "beat"])
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"DATABASE_URL": None}, "mmeval: MMEVAL_PRODUCTION=1 needs DATABASE_URL set in the environment"),
        ({"DEBUG": "maybe"}, "mmeval: DEBUG='maybe' is not a boolean (use 1/0, true/false, yes/no)"),
    ],
    ids=["missing", "bad"],
)
def test_bad_configuration_is_one_line(command, override, message, tmp_path):
    env = production_env(CELERY_BROKER_URL="redis://127.0.0.1:6379/13", **override)

    extra = ("--schedule", str(tmp_path / "beat")) if command == ("beat",) else ()

    result = _celery(*command, *extra, env=env)

    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert output.splitlines() == [message], output
