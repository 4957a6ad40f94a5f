"""Shared fixtures. Personas after healthchecks: alice owns a study, bob collaborates on it,
charlie must see nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def charlie(django_user_model):
    return django_user_model.objects.create_user(username="charlie", password="charlie-pass-123")


@pytest.fixture(scope="session")
def demo_cache_dir() -> Path:
    """Where the demo model's weights are cached across test sessions."""
    path = Path(os.environ.get("MMEVAL_CACHE_DIR", Path.home() / ".cache" / "mmeval"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def plants_jsonl(tmp_path_factory) -> Path:
    """The tabular + text demo's data: plants, their measurements and a note."""
    from workers.engine.demo.tabular.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("plants-data"), n_items=48, seed=0)


@pytest.fixture(scope="session")
def demo_jsonl(tmp_path_factory) -> Path:
    from workers.engine.demo.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("demo-data"), n_items=48, seed=0)


@pytest.fixture(autouse=True)
def entry_limits_off(settings):
    """Tests walk many participants through from one address (127.0.0.1): participant entry
    limits are off unless a test turns them on (tests/views/test_entry_limits.py)."""
    settings.MMEVAL_ENTRY_ADDRESS_LIMIT = 0
    settings.MMEVAL_ENTRY_PLATFORM_ID_LIMIT = 0
    settings.MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT = 100
