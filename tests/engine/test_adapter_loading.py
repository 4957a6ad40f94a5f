"""Loading an adapter by dotted path: what is refused before any import, and which step an
error names (import, create, load) with the adapter's own message."""

from __future__ import annotations

import sys

import pytest

from workers.engine.adapter import AdapterError, adapter_from_path, adapter_path_allowed, adapter_path_split
from workers.engine.registry import forget_adapter, load_adapter


@pytest.mark.parametrize(
    "path, message",
    [
        (
            "os:system",
            "adapter path 'os:system' points into Python's standard library ('os'), not to an adapter package",
        ),
        (
            "builtins:eval",
            "adapter path 'builtins:eval' points into Python's standard library ('builtins'), not to "
            "an adapter package",
        ),
        (
            "subprocess.x:run",
            "adapter path 'subprocess.x:run' points into Python's standard library ('subprocess'), "
            "not to an adapter package",
        ),
        ("adapters.vqa", "adapter path 'adapters.vqa' must look like 'package.module:Factory'"),
        ("adapters.vqa:", "adapter path 'adapters.vqa:' must look like 'package.module:Factory'"),
        ("../evil:Factory", "adapter path '../evil:Factory' must look like 'package.module:Factory'"),
        ("adapters.vqa:Model.load", "adapter path 'adapters.vqa:Model.load' must look like 'package.module:Factory'"),
    ],
)
def test_paths_that_cannot_name_an_adapter_are_refused_before_import(path, message):
    before = set(sys.modules)
    with pytest.raises(AdapterError) as raised:
        adapter_path_split(path)
    assert str(raised.value) == message
    with pytest.raises(AdapterError):
        adapter_from_path(path)
    assert set(sys.modules) == before


def test_a_valid_path_splits_into_module_and_factory():
    assert adapter_path_split("adapters.vqa.model:VqaAdapter") == ("adapters.vqa.model", "VqaAdapter")


@pytest.mark.parametrize(
    "path, allowed",
    [
        ("adapters.vqa:M", True),
        ("adapters:M", True),  # the package itself
        ("adaptersx.vqa:M", False),  # a prefix is a package, not a string prefix of any name
        ("workers.engine.demo.adapter:DemoAdapter", True),
        ("workers.engine.explain:main", False),
        ("os:system", False),
    ],
)
def test_allowed_prefixes_are_packages(path, allowed):
    assert adapter_path_allowed(path, ["workers.engine.demo.", "adapters."]) is allowed


@pytest.mark.parametrize(
    "path, message",
    [
        (
            "tests.engine.no_such_module:A",
            "adapter tests.engine.no_such_module:A: import failed: ModuleNotFoundError: "
            "No module named 'tests.engine.no_such_module'",
        ),
        (
            "tests.builders.toy_adapters:Nope",
            "adapter tests.builders.toy_adapters:Nope: module 'tests.builders.toy_adapters' has no attribute 'Nope'",
        ),
        (
            "tests.builders.toy_adapters:math",
            "adapter tests.builders.toy_adapters:math: math is a module, not an adapter class or factory function",
        ),
        (
            "tests.builders.toy_adapters:FactoryFailsAdapter",
            "adapter tests.builders.toy_adapters:FactoryFailsAdapter: creating it (FactoryFailsAdapter()) failed: "
            "RuntimeError: no config at /etc/toy.yaml (deliberate test failure)",
        ),
        (
            "tests.builders.toy_adapters:GroupInfo",
            "adapter tests.builders.toy_adapters:GroupInfo: class GroupInfo is not a model adapter (it lacks load, "
            "encode, embed, head, baselines, feature_groups, describe_groups); it was not called",
        ),
    ],
)
def test_each_step_of_creating_an_adapter_names_itself(path, message):
    with pytest.raises(AdapterError) as raised:
        adapter_from_path(path)
    assert str(raised.value) == message


def test_a_function_not_marked_as_an_adapter_factory_is_refused_without_being_called(tmp_path):
    marker = tmp_path / "called"
    with pytest.raises(AdapterError) as raised:
        adapter_from_path("tests.builders.registration_adapters:writes_a_marker", {"marker": str(marker)})
    assert str(raised.value) == (
        "adapter tests.builders.registration_adapters:writes_a_marker: writes_a_marker is a function not marked as "
        "an adapter factory; it was not called (name an adapter class, or a function decorated with "
        "workers.engine.adapter.adapter_factory)"
    )
    assert not marker.exists()
    # What the issue found: the demo's training function, named as an adapter.
    with pytest.raises(AdapterError, match="train_demo_model is a function not marked as an adapter factory"):
        adapter_from_path("workers.engine.demo.model:train_demo_model")


def test_a_marked_factory_function_and_an_adapter_class_are_called():
    marked = adapter_from_path("tests.builders.toy_adapters:three_modality_adapter")
    assert list(marked.modalities) == ["a", "b", "c"]
    assert list(adapter_from_path("tests.builders.toy_adapters:PairwiseAdapter").modalities) == ["a", "b"]


def test_a_load_that_raises_names_the_step_and_keeps_the_cause():
    path = "tests.builders.toy_adapters:LoadFailsAdapter"
    forget_adapter(path)
    with pytest.raises(AdapterError) as raised:
        load_adapter(path, device="cpu")
    assert str(raised.value) == (
        "adapter tests.builders.toy_adapters:LoadFailsAdapter: load('cpu') failed: "
        "FileNotFoundError: weights file toy.pt not found (deliberate test failure)"
    )
    assert isinstance(raised.value.__cause__, FileNotFoundError)
    with pytest.raises(AdapterError, match=r"load\('warp-drive'\) failed: RuntimeError"):
        load_adapter("tests.builders.toy_adapters:PairwiseAdapter", device="warp-drive")
