"""Build a registered toy model and its dataset for the model-report tests (services, commands,
pages, API, worker): the analytic :class:`tests.builders.report_adapters.CheckpointedAdapter`
(two inline modalities ``a`` and ``b``, checkpoints with one broken, training items, a
corruption hook), registered through the same services as a researcher's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotations.models import Dataset, RegisteredModel
from annotations.services.datasets import dataset_import
from annotations.services.registry import registered_model_create

TOY_ADAPTER = "tests.builders.report_adapters:CheckpointedAdapter"
#: Options that keep a report of the toy model to a second or two.
FAST_OPTIONS = {
    "n_resamples": 100,
    "noise_levels": [0.0, 0.5, 1.0],
    "noise_samples": 1,
    "permutations": 1,
    "corruption_levels": [0.0, 1.0],
    "pid_resamples": 50,
}
SLICES = {"fields": {"sign": {"from": "label"}}, "slices": {"positive": "sign == pos", "unsure": "confidence < 0.8"}}


def toy_dataset(*, owner, directory: Path, name: str = "toy", n_items: int = 30, seed: int = 7) -> Dataset:
    from tests.builders.report_adapters import LinearAdapter

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in LinearAdapter().make_items(n_items, seed=seed)) + "\n")
    return dataset_import(owner=owner, name=name, jsonl_path=path)


def toy_model(*, owner, dataset: Dataset, name: str = "linear") -> RegisteredModel:
    return registered_model_create(owner=owner, name=name, adapter_path=TOY_ADAPTER, check_dataset=dataset)


@pytest.fixture
def allow_test_adapters(settings):
    """These tests register adapters defined in tests/ (import this fixture to switch it on)."""
    settings.MMEVAL_ADAPTER_PREFIXES = [*settings.MMEVAL_ADAPTER_PREFIXES, "tests."]


@pytest.fixture
def toy(alice, tmp_path, allow_test_adapters):
    """alice's toy model ``linear`` and its 30-item dataset ``toy``."""
    dataset = toy_dataset(owner=alice, directory=tmp_path / "data")
    return toy_model(owner=alice, dataset=dataset), dataset
