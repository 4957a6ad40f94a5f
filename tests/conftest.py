"""Shared fixtures. Personas after healthchecks: alice owns a study, bob collaborates on it,
charlie must see nothing."""

from __future__ import annotations

import ast
import copy
import json
import os
from pathlib import Path

import pytest


def pytest_configure(config):
    from django.conf import settings

    # On a fresh machine the first demo registration trains the demo model (a minute or two on
    # 2 loaded cores) inside the registration's time limit; tests of the limit set their own.
    if settings.configured:  # not in a run without pytest-django
        settings.MMEVAL_REGISTER_TIMEOUT_SECONDS = max(settings.MMEVAL_REGISTER_TIMEOUT_SECONDS, 900)


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


# Registration checks an adapter in a child process: about 3 s of CPU, mostly importing torch.
# Most tests register the same few adapters on the same items, so a test session (each xdist
# worker) reuses the first successful check of each adapter, options, items and time limit.
# Failed checks are never reused, and the tests of registration itself always run the child.
REGISTRATION_TEST_MODULES = frozenset({"test_model_register", "test_command_errors", "test_register_model_hf"})
_registration_checks: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def registration_checks_reused(request, monkeypatch):
    if request.module.__name__.rpartition(".")[2] in REGISTRATION_TEST_MODULES:
        return
    from django.conf import settings

    from annotations.services import registry

    check = registry.adapter_probe_run

    def check_once(*, adapter_path, options, items):
        key = json.dumps(
            [adapter_path, options, items, settings.MMEVAL_DEVICE, settings.MMEVAL_REGISTER_TIMEOUT_SECONDS],
            sort_keys=True,
            default=str,
        )
        if key not in _registration_checks:
            answer = check(adapter_path=adapter_path, options=options, items=items)
            if "step" in answer:  # a failed step: tests of that failure see it every time
                return answer
            _registration_checks[key] = answer
        return copy.deepcopy(_registration_checks[key])

    monkeypatch.setattr(registry, "adapter_probe_run", check_once)


# Tiers. ``./run test fast`` selects ``-m "not needs_services"``: what needs no database,
# browser or Celery worker. The mark is derived here, from each test's fixtures and marks,
# so no test can forget it.
SERVICE_FIXTURES = frozenset({"django_db_setup", "live_server", "celery_worker_process"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        needs = any(item.get_closest_marker(name) for name in ("django_db", "browser", "worker")) or bool(
            SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        )
        if needs:
            item.add_marker(pytest.mark.needs_services)


# The fast tier does not import what it would deselect: a test module whose module-level
# ``pytestmark`` names a service mark marks every one of its tests ``needs_services`` (above),
# so ``-m "not needs_services"`` skips it before import (read with ``ast``, about a millisecond a
# file); its imports (torch, the demo, the views) were a large part of the tier's time.
SERVICE_MARKS = frozenset({"django_db", "browser", "worker"})


# The second-seed pass (``-m trained_model``, ``./run test``) likewise imports only the test
# modules that name the mark: it is applied in the test modules themselves, never by a helper
# or a conftest (``tests/test_tiers.py`` checks that), so the others cannot hold such a test.
TRAINED_MODEL_MARK = "trained_model"


def pytest_ignore_collect(collection_path, config):
    markexpr = config.getoption("markexpr", "")
    if markexpr not in ("not needs_services", TRAINED_MODEL_MARK):
        return None
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if markexpr == TRAINED_MODEL_MARK:
        return None if TRAINED_MODEL_MARK.encode() in collection_path.read_bytes() else True
    return True if _module_marked_for_services(collection_path) else None


def _module_marked_for_services(path) -> bool:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in targets):
            return any(isinstance(n, ast.Attribute) and n.attr in SERVICE_MARKS for n in ast.walk(node.value))
    return False
