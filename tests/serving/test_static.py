"""Static files outside production: whitenoise serves them from the source folders, under
the test client and under runserver without --insecure (what ``manage.py demo`` runs)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from django.test import Client

from .conftest import REPO, free_port, production_env, stop, wait_for_http


def test_stylesheet_and_api_docs_assets_are_served_without_debug(settings):
    assert settings.DEBUG is False
    client = Client()

    css = client.get("/static/mmeval/mmeval.css")
    swagger = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")

    assert css.status_code == 200 and b".errorbox" in b"".join(css.streaming_content)
    assert swagger.status_code == 200


def test_runserver_without_insecure_serves_the_stylesheet(tmp_path):
    env = production_env(
        MMEVAL_PRODUCTION=None,
        DEBUG="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        SECRET_KEY=None,
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/mmeval/mmeval.css", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/css")
            assert b".errorbox" in response.read()
    finally:
        stop(process)
