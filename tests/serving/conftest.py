"""Serving tests: production settings in subprocesses, gunicorn and runserver as real
processes, the health endpoints, sign-in throttling and the limits on bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.isolation import fast_password_hasher, media_root  # noqa: F401  (autouse fixtures)

REPO = Path(__file__).resolve().parents[2]
STRONG_KEY = "k3y-for-tests-only-" + "x9Qz" * 12  # 50+ characters, many distinct


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a production process: the three required variables set, nothing
    inherited that would change the outcome."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMEVAL_", "DJANGO_", "SECURE_"))}
    env.update(
        MMEVAL_PRODUCTION="1",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="mmeval.test,127.0.0.1",
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mmeval"),
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for_http(url: str, *, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``url`` answers at all (any status), or fail with the process's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the server exited with {process.returncode}:\n{out}\n{err}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> str:
    """Stop a server this test started; its combined output."""
    process.terminate()
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out or ""
