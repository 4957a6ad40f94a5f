"""Health endpoints for the orchestrator and the proxy.

* ``/healthz``: the process is up and serving. Touches nothing else, so a slow database
  never gets a healthy web process restarted.
* ``/readyz``: the database answers ``SELECT 1`` and the broker answers a ping, each within
  ``READYZ_TIMEOUT_S``. 503 with a JSON body naming what failed otherwise.

The checks run in threads and the answer never waits longer than the timeout, even when a
peer accepts the connection and then says nothing.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse

READYZ_TIMEOUT_S = 2.0

# A check that hangs past the timeout keeps its thread until its own socket timeout ends it;
# a small shared pool bounds how many can pile up under a probe every few seconds.
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
_pool_lock = threading.Lock()


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_answers, "broker": _broker_answers}
    with _pool_lock:
        futures = {name: _pool.submit(check) for name, check in checks.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=READYZ_TIMEOUT_S)
        except FutureTimeout:
            results[name] = f"no answer within {READYZ_TIMEOUT_S:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency is "not ready"
            results[name] = f"failed: {exc.__class__.__name__}"
    failed = sorted(name for name, result in results.items() if not result.startswith("ok"))
    body = {"status": "unavailable" if failed else "ok", "checks": results}
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200)


def _database_answers() -> str:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's own connection; the pool thread may not come back to it
    return "ok"


def _broker_answers() -> str:
    url = settings.CELERY_BROKER_URL
    if not url:
        return "ok (none configured: tasks run in-process)"
    if urlsplit(url).scheme in ("redis", "rediss"):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url, socket_connect_timeout=READYZ_TIMEOUT_S, socket_timeout=READYZ_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    from kombu import Connection

    with Connection(url, connect_timeout=READYZ_TIMEOUT_S) as conn:
        conn.ensure_connection(max_retries=1, timeout=READYZ_TIMEOUT_S)
    return "ok"
