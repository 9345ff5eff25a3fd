"""The import direction of the code base, enforced: lower layers never import higher ones.

The layers, bottom to top (docs/architecture.md draws them):

0. `hitl_gate.core`: domain declarations, home paths, the DuckDB database, digests, staged Parquet.
1. `hitl_gate.quality`, `hitl_gate.audit`, `hitl_gate.identity`: the contract and expectations;
   the sealed log; people, their keys and signed acts.
2. `hitl_gate.ingest`, `features`, `models`, `policies`: reading landing files; the Feast
   repository, MLflow training and scoring, the policy engine and its lifecycle.
3. `hitl_gate.routing`, `hitl_gate.review`, `hitl_gate.execution`, `hitl_gate.observability`:
   the stages' decision rules.
4. `pipelines.resources`, `pipelines.io_managers`, `pipelines.executors`: Dagster resources.
5. `assets`: thin Dagster assets and checks.
6. `pipelines` (definitions, jobs, schedules, sensors): the Dagster code location.
7. `hitl_gate.app`: the `hitl` CLI, the demo and onboarding, which launch the jobs.

A module may import its own layer or any lower one, never a higher one, and the module graph
has no cycle anywhere (two modules of one layer importing each other included). The library
(layers 0-3) therefore never imports `assets/` or `pipelines/`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hitl_gate", "features", "models", "policies", "assets", "pipelines")

# Longest prefix wins: `pipelines.resources` is layer 4 although `pipelines` is layer 6.
LAYERS: dict[str, int] = {
    "hitl_gate": 0,
    "hitl_gate.core": 0,
    "hitl_gate.quality": 1,
    "hitl_gate.audit": 1,
    "hitl_gate.identity": 1,
    "hitl_gate.ingest": 2,
    "features": 2,
    "models": 2,
    "policies": 2,
    "hitl_gate.routing": 3,
    "hitl_gate.review": 3,
    "hitl_gate.execution": 3,
    "hitl_gate.observability": 3,
    "pipelines.resources": 4,
    "pipelines.io_managers": 4,
    "pipelines.executors": 4,
    "assets": 5,
    "pipelines": 6,
    "hitl_gate.app": 7,
}


def layer_of(module: str) -> int:
    """The layer of a module: the entry of its longest declared prefix."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} is in no declared layer: add its package to LAYERS")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The project modules `module` imports, wherever the import statement stands.

    Imports inside functions count too: deferring an import hides a dependency from import
    time, not from the design. `from package import name` counts as importing the submodule
    `package.name` when that is a module, else the package.
    """
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = [f"{source}.{alias.name}" for alias in node.names]
            candidates = [name for name in submodules if name in known] or [source]
        else:
            continue
        for name in candidates:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = module_files(root)
    return {module: imported_modules(module, path, files) for module, path in files.items()}


@cache
def project_graph() -> dict[str, set[str]]:
    """The checkout's import graph, read once per test process (the three rules share it;
    nothing edits the tree while the tests run). Callers get the same graph: never mutate it."""
    return import_graph()


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, as readable lines."""
    return sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_every_module_is_in_a_layer() -> None:
    unplaced = []
    for module in module_files():
        try:
            layer_of(module)
        except KeyError as error:
            unplaced.append(str(error))
    assert not unplaced, unplaced


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(project_graph()) == []


def test_the_library_never_imports_assets_or_pipelines() -> None:
    graph = project_graph()
    library = [m for m in graph if layer_of(m) <= 3]
    offenders = sorted(
        f"{module} imports {target}"
        for module in library
        for target in graph[module]
        if target.split(".")[0] in {"assets", "pipelines"}
    )
    assert offenders == []


def test_no_import_cycles() -> None:
    assert cycles(project_graph()) == []


@pytest.mark.parametrize(
    ("source", "offending_import"),
    [
        ("hitl_gate/core/probe.py", "from pipelines.resources import HomeResource\n"),
        ("policies/probe.py", "import assets.common\n"),
        ("hitl_gate/review/probe.py", "def later():\n    from pipelines import jobs\n"),
    ],
)
def test_the_check_catches_a_back_import(
    tmp_path: Path, source: str, offending_import: str
) -> None:
    """The rule is live: a library module that reaches up into the Dagster layers is named."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "resources.py").write_text("HomeResource = object\n")
    (tmp_path / "pipelines" / "jobs.py").write_text("")
    (tmp_path / "assets" / "common.py").write_text("")
    probe = tmp_path / source
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(offending_import)
    module = ".".join(Path(source).with_suffix("").parts)
    problems = upward_imports(import_graph(tmp_path))
    assert any(line.startswith(f"{module} (layer") for line in problems), problems


def test_the_check_catches_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "__init__.py").write_text("")
    (tmp_path / "policies" / "a.py").write_text("from policies import b\n")
    (tmp_path / "policies" / "b.py").write_text("import policies.a\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    assert cycles(import_graph(tmp_path)) == [["policies.a", "policies.b"]]
