"""The two-tower adapter printed in README's "Bring your own model" runs as printed: the code
block is written to an ``adapters`` package in a temporary folder, loaded by dotted path with
its ``weights`` option, explained by every method, and registered through the command."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from annotations.models import RegisteredModel
from annotations.services.datasets import dataset_import
from tests.builders.hf_models import image_items
from tests.builders.studies import write_dataset
from tests.commandline import manage
from tests.engine.adapter_checks import assert_ig_complete
from workers.engine.adapter import adapter_from_path
from workers.engine.attribution import METHODS, attribute, prepare_batch
from workers.engine.interactions import CROSS_METHODS, cross_modal_interaction
from workers.engine.registry import check_adapter

README = Path(__file__).resolve().parents[2] / "README.md"
ADAPTER = "adapters.two_tower:TwoTowerAdapter"

torch.set_num_threads(1)


def readme_adapter_source() -> str:
    """The README's ``python`` block that starts with ``# adapters/two_tower.py``."""
    match = re.search(r"```python\n(# adapters/two_tower\.py\n.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, "README.md has no '# adapters/two_tower.py' code block"
    return match.group(1)


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """The README block as ``adapters/two_tower.py`` on the import path, and random weights of
    its ``TwoTower`` saved as a researcher's training would save them."""
    package = tmp_path / "adapters"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "two_tower.py").write_text(readme_adapter_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    stale = [name for name in sys.modules if name == "adapters" or name.startswith("adapters.")]
    for name in stale:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module("adapters.two_tower")
    torch.manual_seed(0)
    path = tmp_path / "two_tower.pt"
    torch.save(module.TwoTower().state_dict(), path)
    yield path
    for name in [name for name in sys.modules if name == "adapters" or name.startswith("adapters.")]:
        del sys.modules[name]


def test_the_readme_adapter_is_about_sixty_lines():
    lines = [line for line in readme_adapter_source().splitlines() if line.strip()]
    assert 45 <= len(lines) <= 70


def test_the_readme_adapter_runs_every_method(weights, tmp_path):
    adapter = adapter_from_path(ADAPTER, {"weights": str(weights)})
    adapter.load(torch.device("cpu"))
    items = image_items(
        tmp_path / "images",
        ["what colour is the square?", "the circle is what colour", "is the square a circle or what"],
    )
    check = check_adapter(adapter, items)
    assert check.modalities == ["image", "text"] and check.embedded_shapes == [[3, 32, 32], [8, 32]]
    batch = adapter.encode(items)
    p = prepare_batch(adapter, batch)
    targets = torch.tensor([0, 1, 2])
    for method in sorted(METHODS):
        for res in attribute(adapter, batch, method=method, targets=targets, prepared=p):
            assert all(np.isfinite(res.group_scores[m]).all() for m in ("image", "text"))
            assert len(res.group_scores["image"]) == 16 and len(res.group_scores["text"]) == 8

    assert_ig_complete(p, targets)

    for method in sorted(CROSS_METHODS):  # the bilinear head joins the towers: real interactions
        for res in cross_modal_interaction(adapter, batch, method=method, targets=targets, prepared=p):
            assert res.matrix.shape == (16, 8) and np.abs(res.matrix).max() > 0

    groups = adapter.describe_groups(batch)
    assert [g.text for g in groups[0][1] if not g.hidden] == ["what", "colour", "is", "the", "square", "?"]
    assert groups[0][0][0].box == (0, 0, 10, 6)  # the first item's image is 40x24


@pytest.mark.django_db(transaction=True)
def test_the_readme_adapter_registers_with_its_options(weights, alice, tmp_path, capsys):
    dataset_import(owner=alice, name="shapes", jsonl_path=write_dataset(tmp_path / "data", 2))
    argv = [
        "register_model",
        "two-tower",
        ADAPTER,
        "--options",
        f'{{"weights": "{weights}"}}',
        "--dataset",
        "shapes",
        "--owner",
        "alice",
    ]
    assert manage(capsys, *argv) == (0, "Registered 'two-tower': 4 labels, modalities ['image', 'text'].\n", "")
    model = RegisteredModel.objects.get(name="two-tower")
    assert (model.adapter_path, model.adapter_options) == (ADAPTER, {"weights": str(weights)})
