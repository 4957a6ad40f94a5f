"""The import graph of a source tree and the layer rules of docs/DESIGN.md ("Layers") over it.

Every arrow counts: absolute and relative imports (resolved against the importing module's
package), at module level or inside a function (a lazy import is still an arrow). Each rule
returns its offenders, ``{module: [imported modules]}``, so a test asserts it is empty and the
planted-violation test (tests/test_layers.py) asserts it is not.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("annotations", "workers", "mmeval", "benchmarks")
#: Third-party packages that bring Django into a module (directly or through the app).
DJANGO = ("django", "rest_framework", "celery")
#: The layers that never import Django (docs/DESIGN.md, "Layers").
PURE_LAYERS = ("workers.engine", "annotations.analysis")
#: The interfaces: thin layers over services and selectors.
INTERFACES = (
    "annotations.views_",
    "annotations.api",
    "annotations.downloads",
    "annotations.forms",
    "annotations.serializers",
    "annotations.urls_",
    "annotations.management",
)
#: The management commands that wrap a benchmark (the only product modules that import one).
BENCHMARK_WRAPPERS = ("annotations.management.commands.bench_", "annotations.management.commands.loadtest")
#: What the Celery tasks may call: the pipelines and the services.
TASK_CALLEES = ("annotations.services", "workers.pipeline", "workers.report_pipeline")


@dataclass(frozen=True)
class ImportGraph:
    modules: dict[str, Path]
    #: module -> every module it imports, first-party ones resolved to the most specific module
    edges: dict[str, set[str]]

    def under(self, prefix: str) -> list[str]:
        return sorted(name for name in self.modules if _within(name, prefix))


def _within(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or inside it; a prefix ending in ``_`` matches a name start
    (``annotations.views_`` matches ``annotations.views_participant``)."""
    if prefix.endswith("_"):
        return name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


def _within_any(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(_within(name, prefix) for prefix in prefixes)


def import_graph_build(*, root: Path, packages: tuple[str, ...] = PACKAGES) -> ImportGraph:
    """The import graph of ``packages`` under ``root`` (migrations left out)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    edges = {
        name: {m for m in _module_imports(name=name, path=path, modules=modules) if m != name}
        for name, path in modules.items()
    }
    return ImportGraph(modules=modules, edges=edges)


def _module_imports(*, name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module ``path`` imports, at any depth, resolved to the most specific module known
    (``from a.b import c`` names ``a.b.c`` when that is a module) or kept as written."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _import_base(package=package, level=node.level, module=node.module, where=f"{path}:{node.lineno}")
            for alias in node.names:
                qualified = f"{base}.{alias.name}" if base else alias.name
                out.add(qualified if qualified in modules else base)
    return out


def _import_base(*, package: str, level: int, module: str | None, where: str) -> str:
    """The absolute module a ``from`` import reads from: ``from ..x import y`` inside package
    ``a.b.c`` reads ``a.b.x``."""
    if level == 0:
        return module or ""
    parts = package.split(".") if package else []
    if level - 1 > len(parts) or (level - 1 == len(parts) and not module):
        raise ValueError(f"{where}: relative import beyond the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


# --------------------------------------------------------------------------- rules


def import_cycles(*, graph: ImportGraph) -> list[list[str]]:
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
        for other in sorted(graph.edges[node] & graph.modules.keys()):
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

    for name in sorted(graph.modules):
        if name not in index:
            visit(name)
    return found


def _offenders(graph: ImportGraph, importers: list[str], bad) -> dict[str, list[str]]:
    found = {name: sorted(m for m in graph.edges[name] if bad(m)) for name in importers}
    return {name: mods for name, mods in found.items() if mods}


def pure_layer_violations(*, graph: ImportGraph, layer: str) -> dict[str, list[str]]:
    """``layer`` (the engine, the statistics) imports no Django and nothing first-party outside
    itself: every other first-party module is Django's side of the line."""
    first_party = tuple(sorted({name.split(".")[0] for name in graph.modules}))
    return _offenders(
        graph,
        graph.under(layer),
        lambda m: _within_any(m, DJANGO) or (_within_any(m, first_party) and not _within(m, layer)),
    )


def service_violations(*, graph: ImportGraph, layer: str) -> dict[str, list[str]]:
    """Services and selectors may use the engine's pure helpers, never the pipelines or the
    tasks (work is handed over by task name), nor an interface."""
    return _offenders(
        graph,
        graph.under(layer),
        lambda m: (_within(m, "workers") and not _within(m, "workers.engine")) or _within_any(m, INTERFACES),
    )


def selector_write_violations(*, graph: ImportGraph) -> dict[str, list[str]]:
    """A read module never imports a service (services write)."""
    return _offenders(graph, graph.under("annotations.selectors"), lambda m: _within(m, "annotations.services"))


def web_violations(*, graph: ImportGraph) -> dict[str, list[str]]:
    """Views, the API and the downloads never import the workers' side (the pipelines, the
    tasks): a web request never computes. Only commands run a job in their own process."""
    web = [
        name for name in graph.modules if _within_any(name, INTERFACES) and not _within(name, "annotations.management")
    ]
    return _offenders(graph, sorted(web), lambda m: _within(m, "workers") and not _within(m, "workers.engine"))


def benchmark_import_violations(*, graph: ImportGraph) -> dict[str, list[str]]:
    """Nothing in the product imports ``benchmarks/`` but the thin ``bench_*``/``loadtest``
    commands that wrap them."""
    product = [
        name for name in graph.modules if not _within(name, "benchmarks") and not _within_any(name, BENCHMARK_WRAPPERS)
    ]
    return _offenders(graph, sorted(product), lambda m: _within(m, "benchmarks"))


def task_violations(*, graph: ImportGraph) -> dict[str, list[str]]:
    """``workers/tasks.py`` is thin: of the first-party code it imports only services and the
    pipelines (never the engine, a view or another interface)."""
    first_party = tuple(sorted({name.split(".")[0] for name in graph.modules}))
    tasks = [name for name in graph.modules if name == "workers.tasks"]
    return _offenders(graph, tasks, lambda m: _within_any(m, first_party) and not _within_any(m, TASK_CALLEES))


def django_users(*, graph: ImportGraph, layer: str) -> list[str]:
    """The modules of ``layer`` that import Django's side themselves: Django, the app, or
    first-party code outside the two pure layers (the engine and the statistics)."""
    return sorted(_offenders(graph, graph.under(layer), _django_side).keys())


def _django_side(module: str) -> bool:
    if _within_any(module, PURE_LAYERS):
        return False
    return _within_any(module, DJANGO + ("annotations", "mmeval", "workers"))
