"""Per-worker isolation for ``pytest -n N`` (pytest-xdist). Loaded with ``-p tests.parallel``
(pytest.ini), so it runs before Django reads its settings.

The workers share the Postgres server (pytest-django gives each its own ``test_…_gwN``
database) but must not share a Celery broker: a Celery worker started by one would take the
other's tasks and run them against the wrong database, and a fixture's ``flushdb`` would drop
the other's queue. Each xdist worker therefore gets its own Redis database (the configured one,
counting down) and its own media folder."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def _worker_index() -> int | None:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … on a worker; unset otherwise
    return int(name.removeprefix("gw")) if name.startswith("gw") else None


def _own_redis_database(url: str, index: int) -> str:
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    database = base - index
    if database < 0:
        raise RuntimeError(f"{url}: too few Redis databases below {base} for xdist worker {index}")
    return urlunsplit(parts._replace(path=f"/{database}"))


def isolate_worker() -> None:
    index = _worker_index()
    if index is None:
        return
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis://"):
        os.environ["CELERY_BROKER_URL"] = _own_redis_database(broker, index)
    if os.environ.get("MEDIA_ROOT"):
        media = Path(os.environ["MEDIA_ROOT"]) / f"gw{index}"
        media.mkdir(parents=True, exist_ok=True)
        os.environ["MEDIA_ROOT"] = str(media)


isolate_worker()
