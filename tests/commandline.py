"""Running management commands the way a user does, to assert on what they see: the exit
status and the exact lines on stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.core.management import execute_from_command_line

ROOT = Path(__file__).resolve().parent.parent


def manage(capsys, *argv: str) -> tuple[int, str, str]:
    """``manage.py ARGV`` in this process (Django's own argument parsing and error printing):
    ``(exit status, stdout, stderr)``. Commands close the database connections when they
    end, so a test that touches the database needs ``django_db(transaction=True)``."""
    capsys.readouterr()
    try:
        execute_from_command_line(["manage.py", *argv])
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def manage_py(
    *argv: str, env: dict[str, str | None] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python manage.py ARGV`` in a fresh process, with ``env`` over this process's environment
    (a value of None removes the variable)."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *argv],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
