"""The layers hold: cli -> flows -> tasks -> core library, read from the code's own imports.

Every import of the tree (at module level or inside a function, absolute or relative) is
resolved to a module of the project, through the namespace the package installs
(`inception_retrain.cli` is cli/, `.flows` flows/, `.tasks` tasks/, the rest
inception_retrain/). Then:
  * no import runs from a lower layer to a higher one;
  * the project's modules import each other without a cycle;
  * a task module imports no other stage (only the tasks' shared `runtime` and `ui`);
  * the core library imports neither Prefect nor the command line's typer;
  * no module is much over 400 lines;
  * the wheel installs only the `inception_retrain` namespace.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "inception_retrain"
# folder -> (package it installs as, layer: higher imports lower)
FOLDERS = {
    "cli": (f"{NAMESPACE}.cli", 4),
    "flows": (f"{NAMESPACE}.flows", 3),
    "tasks": (f"{NAMESPACE}.tasks", 2),
    NAMESPACE: (NAMESPACE, 1),
}
SHARED_TASK_MODULES = {f"{NAMESPACE}.tasks.runtime", f"{NAMESPACE}.tasks.ui"}
MAX_LINES = 420  # "about 400"


def modules() -> dict[str, Path]:
    """Every module of the project: dotted name -> file."""
    found = {}
    for folder, (package, _) in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> int:
    for package, level in sorted(FOLDERS.values(), key=lambda p: -len(p[0])):
        if module == package or module.startswith(package + "."):
            return level
    raise KeyError(module)


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports (the deepest known module of each name)."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                origin = ".".join(base[: len(base) - node.level + 1])
                prefix = f"{origin}.{node.module}" if node.module else origin
            else:
                prefix = node.module
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
            names.add(prefix)
    resolved = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            resolved.add(name)
    return resolved


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_no_import_runs_up_a_layer(graph):
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert not upward


def test_no_cycles(graph):
    # Package __init__ files are faces (their children import the package to reach a
    # sibling); only the edges between modules with code count.
    files = modules()
    edges = {m: {t for t in ts if files[t].name != "__init__.py"} for m, ts in graph.items()}
    graphlib.TopologicalSorter(edges).prepare()  # raises CycleError naming the cycle


def test_a_stage_imports_no_other_stage_and_no_flow(graph):
    stages = {m for m in graph if m.startswith(f"{NAMESPACE}.tasks.")} - SHARED_TASK_MODULES
    for stage in stages:
        others = {t for t in graph[stage] if layer(t) >= 2 and t != f"{NAMESPACE}.tasks"}
        assert others <= SHARED_TASK_MODULES, (stage, others)


def test_the_core_knows_neither_prefect_nor_the_command_line():
    for name, path in modules().items():
        if layer(name) != 1:
            continue
        tree = ast.parse(path.read_text())
        roots = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        assert not roots & {"prefect", "prefect_dask", "typer", "click"}, name


def test_no_module_is_much_over_400_lines():
    files = [*modules().values(), *sorted((REPO / "bench").glob("*.py"))]  # all but tests
    long = {
        str(path.relative_to(REPO)): n
        for path in files
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long


@pytest.mark.slow
def test_the_wheel_installs_only_the_project_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("inception_retrain-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    roots = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert roots == {NAMESPACE}
    for package in ("cli", "flows", "tasks", "dropout", "reports"):
        assert f"{NAMESPACE}/{package}/__init__.py" in names
    assert f"{NAMESPACE}/reports/templates/evaluation.html.j2" in names
