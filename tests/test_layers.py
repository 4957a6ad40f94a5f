"""The layers of docs/DESIGN.md ("Layers"), read off the source by ``tests/layers.py``: arrows
point one way and no import circle exists, counting relative imports and imports inside
functions (a lazy import is still an arrow). The planted tree at the end proves the checker
sees each kind of arrow, so a rule cannot pass because the checker is blind."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from tests.layers import (
    benchmark_import_violations,
    django_users,
    import_cycles,
    import_graph_build,
    pure_layer_violations,
    selector_write_violations,
    service_violations,
    task_violations,
    web_violations,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph():
    """The repository's import graph, read once by the worker that runs these tests (at import
    time every pytest-xdist worker would read it while collecting)."""
    return import_graph_build(root=ROOT)


def test_the_checker_sees_the_modules_it_judges(graph):
    assert {
        "annotations.services.precompute",
        "workers.pipeline",
        "workers.engine.attribution",
        "annotations.selectors.exports",
        "annotations.downloads",
        "workers.engine.demo.report_hooks",
    } <= graph.modules.keys()
    assert "annotations.selectors.exports" in graph.edges["annotations.selectors.analysis"]
    # Relative imports are resolved: `from . import model as demo_model`, `from ..adapter import ...`.
    assert {"workers.engine.demo.model", "workers.engine.adapter"} <= graph.edges["workers.engine.demo.adapter"]


def test_no_import_circle(graph):
    assert import_cycles(graph=graph) == []


@pytest.mark.parametrize("layer", ["workers.engine", "annotations.analysis"])
def test_engine_and_statistics_never_import_django(layer, graph):
    assert pure_layer_violations(graph=graph, layer=layer) == {}


@pytest.mark.parametrize("layer", ["annotations.services", "annotations.selectors"])
def test_services_and_selectors_never_import_the_workers_or_an_interface(layer, graph):
    assert service_violations(graph=graph, layer=layer) == {}


def test_web_interfaces_never_import_the_workers(graph):
    assert web_violations(graph=graph) == {}


def test_selectors_write_nothing(graph):
    assert selector_write_violations(graph=graph) == {}


def test_only_the_bench_commands_import_the_benchmarks(graph):
    assert benchmark_import_violations(graph=graph) == {}
    wrappers = {name for name, mods in graph.edges.items() if any(m.startswith("benchmarks") for m in mods)}
    assert wrappers - set(graph.under("benchmarks")) == {
        "annotations.management.commands.bench_dashboard",
        "annotations.management.commands.bench_explain",
        "annotations.management.commands.bench_export",
        "annotations.management.commands.bench_gpu",
        "annotations.management.commands.bench_heatmaps",
        "annotations.management.commands.bench_participant_pages",
        "annotations.management.commands.bench_precompute",
        "annotations.management.commands.bench_report",
        "annotations.management.commands.loadtest",
    }


def test_only_the_dashboard_export_precompute_and_page_benchmarks_use_django(graph):
    assert django_users(graph=graph, layer="benchmarks") == [
        "benchmarks.dashboard",
        "benchmarks.export",
        "benchmarks.participant_pages",
        "benchmarks.precompute",
    ]


def test_tasks_call_only_pipelines_and_services(graph):
    assert task_violations(graph=graph) == {}
    assert {"workers.pipeline", "annotations.services.precompute"} <= graph.edges["workers.tasks"]


# --------------------------------------------------------------------------- the planted tree

PLANTED = {
    # A circle through a relative import and a lazy one.
    "workers/__init__.py": "",
    "workers/engine/__init__.py": "",
    "workers/engine/a.py": "from . import b\n",
    "workers/engine/b.py": "def f():\n    from .a import thing\n    return thing\n",
    # The engine reaches Django's side by a relative import of the pipeline, lazily too.
    "workers/engine/c.py": "def g():\n    from ..pipeline import run\n    return run\n",
    "workers/engine/sub/__init__.py": "from ...tasks import job\n",
    "workers/pipeline.py": "import django\n",
    # The tasks import the engine (relatively) and a view (from inside a function).
    "workers/tasks.py": "from .engine import a\n\ndef job():\n    from annotations import views_participant\n",
    "annotations/__init__.py": "",
    "annotations/views_participant.py": "",
    "annotations/api.py": "def start():\n    from workers.pipeline import run\n",
    "annotations/analysis/__init__.py": "",
    "annotations/analysis/stats.py": "from ..services import writes\n",
    "annotations/services/__init__.py": "",
    "annotations/services/writes.py": "def h():\n    from workers import pipeline\n",
    "annotations/selectors/__init__.py": "",
    "annotations/selectors/reads.py": "from ..services.writes import h\nfrom .. import views_participant\n",
    "annotations/management/__init__.py": "",
    "annotations/management/commands/__init__.py": "",
    "annotations/management/commands/bench_x.py": "from benchmarks import timing\n",
    "annotations/management/commands/report.py": "def run():\n    from benchmarks.timing import t\n",
    "mmeval/__init__.py": "",
    "benchmarks/__init__.py": "",
    "benchmarks/timing.py": "",
}


@pytest.fixture
def planted(tmp_path):
    for name, text in PLANTED.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return import_graph_build(root=tmp_path)


def test_the_checker_catches_a_relative_lazy_circle(planted):
    assert planted.edges["workers.engine.a"] == {"workers.engine.b"}
    assert planted.edges["workers.engine.b"] == {"workers.engine.a"}
    assert import_cycles(graph=planted) == [["workers.engine.a", "workers.engine.b"]]


def test_the_checker_catches_a_relative_engine_to_django_import(planted):
    assert pure_layer_violations(graph=planted, layer="workers.engine") == {
        "workers.engine.c": ["workers.pipeline"],
        "workers.engine.sub": ["workers.tasks"],
    }
    assert pure_layer_violations(graph=planted, layer="annotations.analysis") == {
        "annotations.analysis.stats": ["annotations.services.writes"]
    }


def test_the_checker_catches_services_and_selectors_crossing_layers(planted):
    assert service_violations(graph=planted, layer="annotations.services") == {
        "annotations.services.writes": ["workers.pipeline"]
    }
    assert service_violations(graph=planted, layer="annotations.selectors") == {
        "annotations.selectors.reads": ["annotations.views_participant"]
    }
    assert selector_write_violations(graph=planted) == {"annotations.selectors.reads": ["annotations.services.writes"]}


def test_the_checker_catches_a_view_that_computes(planted):
    assert web_violations(graph=planted) == {"annotations.api": ["workers.pipeline"]}


def test_the_checker_catches_the_product_importing_a_benchmark(planted):
    # The bench_* wrapper may; another command may not, even lazily.
    assert benchmark_import_violations(graph=planted) == {
        "annotations.management.commands.report": ["benchmarks.timing"]
    }


def test_the_checker_catches_a_task_that_is_not_thin(planted):
    assert task_violations(graph=planted) == {"workers.tasks": ["annotations.views_participant", "workers.engine.a"]}


def test_a_relative_import_beyond_the_top_package_is_an_error(tmp_path):
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "x.py").write_text("from ... import y\n")
    with pytest.raises(ValueError, match="beyond the top-level package"):
        import_graph_build(root=tmp_path, packages=("workers",))


def test_a_registered_model_is_loaded_only_through_the_one_loader(graph):
    """Every adapter built for a registered model (``load_adapter(<row>.adapter_path, ...)``)
    goes through ``workers.adapters.registered_model_adapter``, which always passes the stored
    options: a loader that forgot them could not build a Hugging Face model."""
    offenders = []
    for name, path in graph.modules.items():
        if name == "workers.adapters":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "load_adapter"
                and node.args
                and isinstance(node.args[0], ast.Attribute)
                and node.args[0].attr == "adapter_path"
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []
