"""The layers of docs/DESIGN.md ("Layers"), read off the source: arrows point one way and no
import circle exists, counting imports inside functions too (a lazy import is still an arrow)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("annotations", "workers", "mmeval", "benchmarks")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth, resolved to the most specific module known
    (``from a.b import c`` names ``a.b.c`` when that is a module) or kept as written."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                out.add(qualified if qualified in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


GRAPH = {name: {m for m in _imports(path) if m != name} for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in GRAPH[node] & MODULES.keys():
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    return found


def test_the_checker_sees_the_modules_it_judges():
    assert {
        "annotations.services.precompute",
        "workers.pipeline",
        "workers.engine.attribution",
        "annotations.selectors.exports",
        "annotations.downloads",
    } <= MODULES.keys()
    assert "annotations.selectors.exports" in GRAPH["annotations.selectors.analysis"]


def test_no_import_circle():
    assert _cycles() == []


def _under(prefix: str) -> list[str]:
    return [name for name in MODULES if name == prefix or name.startswith(prefix + ".")]


@pytest.mark.parametrize("layer", ["workers.engine", "annotations.analysis"])
def test_engine_and_statistics_never_import_django(layer):
    offenders = {
        name: sorted(
            m for m in GRAPH[name] if m.split(".")[0] in ("django", "rest_framework", "celery", "annotations", "mmeval")
        )
        for name in _under(layer)
    }
    offenders = {name: mods for name, mods in offenders.items() if [m for m in mods if not m.startswith(layer)]}
    assert offenders == {}


@pytest.mark.parametrize("layer", ["annotations.services", "annotations.selectors"])
def test_services_and_selectors_never_import_the_workers_or_an_interface(layer):
    """They may use the engine's pure helpers, never the pipeline or the tasks (work is handed
    over by task name), nor views, the API or downloads."""
    interfaces = (
        "annotations.views_",
        "annotations.api",
        "annotations.downloads",
        "annotations.forms",
        "annotations.serializers",
        "annotations.urls_",
    )
    offenders = {
        name: sorted(
            m
            for m in GRAPH[name]
            if (m.startswith("workers.") and not m.startswith("workers.engine")) or m.startswith(interfaces)
        )
        for name in _under(layer)
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_selectors_write_nothing():
    """A read module never imports a service (services write)."""
    offenders = {
        name: sorted(m for m in GRAPH[name] if m.startswith("annotations.services"))
        for name in _under("annotations.selectors")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
