"""tests/parallel.py: each pytest-xdist worker gets its own Redis database and media folder."""

from __future__ import annotations

import pytest

from tests import parallel


def test_each_worker_counts_down_from_the_configured_redis_database():
    assert parallel._own_redis_database("redis://127.0.0.1:6379/15", 0) == "redis://127.0.0.1:6379/15"
    assert parallel._own_redis_database("redis://127.0.0.1:6379/15", 3) == "redis://127.0.0.1:6379/12"
    assert parallel._own_redis_database("redis://:secret@host:6380/2?x=1", 1) == "redis://:secret@host:6380/1?x=1"
    with pytest.raises(RuntimeError, match="too few Redis databases below 1 for xdist worker 2"):
        parallel._own_redis_database("redis://127.0.0.1:6379/1", 2)


def test_a_worker_takes_its_own_broker_and_media_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path))
    parallel.isolate_worker()
    assert parallel.os.environ["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/14"
    assert parallel.os.environ["MEDIA_ROOT"] == str(tmp_path / "gw1") and (tmp_path / "gw1").is_dir()


def test_outside_xdist_nothing_changes(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    parallel.isolate_worker()
    assert parallel.os.environ["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/15"
