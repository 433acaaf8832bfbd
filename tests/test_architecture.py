"""The layers and wings hold, read from the code's own imports.

Every module lives under inception_retrain/, at the path its import names: cli/, flows/ and
tasks/ are the layers above the core (the repository's top-level flows and tasks are links to
them), and the core is config.py above the wings. Every import of the tree (at module level or
inside a function, absolute or relative) is resolved to a module of the project. Then:
  * no import runs from a lower layer to a higher one (cli -> flows -> tasks -> core);
  * a wing imports only the wings before it in `WINGS`, and no wing imports the config: the
    flows split it into the specs each stage takes;
  * each wing's docstring says which wings it may import, and says exactly that;
  * the project's modules import each other without a cycle;
  * a task module imports no other stage (only the tasks' shared `runtime` and `ui`);
  * the core imports neither Prefect nor the command line's typer;
  * no core function takes the whole config, and at most three task functions do;
  * no formatter escape (skip or off markers): ruff format owns the layout;
  * the wheel installs only the `inception_retrain` namespace.
"""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "inception_retrain"
PACKAGE = REPO / NAMESPACE
LAYERS = {"cli": 4, "flows": 3, "tasks": 2}  # the core is 1
# The core's wings, in order: each may import only those before it.
WINGS = ("plumbing", "data", "features", "training", "evaluation", "dropout", "registry", "runs")
CONFIG = f"{NAMESPACE}.config"
SHARED_TASK_MODULES = {f"{NAMESPACE}.tasks.runtime", f"{NAMESPACE}.tasks.ui"}


def modules() -> dict[str, Path]:
    """Every module of the project: dotted name -> file (its path is its import path)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def part(module: str) -> str | None:
    """The layer folder or wing a module belongs to (None: config.py, the package root)."""
    parts = module.split(".")
    return parts[1] if module != CONFIG and len(parts) > 1 else None


def layer(module: str) -> int:
    return LAYERS.get(part(module) or "", 1)


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


def test_every_module_sits_in_a_layer_or_a_wing():
    stray = [m for m in modules() if part(m) not in {*LAYERS, *WINGS, None}]
    assert not stray
    roots = {m for m in modules() if part(m) is None}
    assert roots == {NAMESPACE, CONFIG}  # the core's top: the package and the config


def test_no_import_runs_up_a_layer(graph):
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert not upward


def test_a_wing_imports_only_the_wings_before_it_and_never_the_config(graph):
    wrong = []
    for module, targets in graph.items():
        if part(module) not in WINGS:
            continue
        allowed = set(WINGS[: WINGS.index(part(module)) + 1])
        for target in targets:
            if target == CONFIG or (target != NAMESPACE and part(target) not in allowed):
                wrong.append(f"{module} -> {target}")
    assert not wrong


def test_each_wing_says_which_wings_it_may_import():
    for index, wing in enumerate(WINGS):
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
        match = re.search(r"^May import: (.*)\.$", doc or "", re.M)
        assert match, f"{wing}/__init__.py has no 'May import: ...' line"
        said = set() if match.group(1) == "nothing of the project" else match.group(1)
        if said:
            said = {name.strip() for name in said.split(",")}
        assert said == set(WINGS[:index]), wing


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


def _import_roots(tree: ast.AST) -> set[str]:
    return {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
    }


def test_the_core_knows_neither_prefect_nor_the_command_line():
    for name, path in modules().items():
        if layer(name) == 1:
            roots = _import_roots(ast.parse(path.read_text()))
            assert not roots & {"prefect", "prefect_dask", "typer", "click"}, name


def _config_parameters(path: Path) -> list[str]:
    """Functions of `path` with a parameter that is the whole config: annotated
    RetrainConfig, or a bare `config` without an annotation."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            annotation = ast.unparse(arg.annotation) if arg.annotation else ""
            if "RetrainConfig" in annotation or (arg.arg == "config" and not annotation):
                found.append(f"{path.name}:{node.name}")
    return found


def test_no_core_function_takes_the_config_and_few_tasks_do():
    files = modules()
    core = [f for m, path in files.items() if part(m) in WINGS for f in _config_parameters(path)]
    assert not core
    tasks = [f for m, path in files.items() if part(m) == "tasks" for f in _config_parameters(path)]
    assert len(tasks) <= 3, tasks


def test_the_formatter_owns_the_layout():
    """No line opts out of ruff format: code that reads badly formatted is split by job."""
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "bench").glob("*.py")]
    markers = tuple("fmt: " + word for word in ("skip", "off"))  # built: this file holds them
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(marker in line for marker in markers)
    ]
    assert not found


def test_the_top_level_flows_and_tasks_are_the_packages_themselves():
    for name in ("flows", "tasks"):
        link = REPO / name
        assert link.is_symlink() and link.resolve() == (PACKAGE / name).resolve()


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
    for package in ("cli", "flows", "tasks", *WINGS, "evaluation/reports"):
        assert f"{NAMESPACE}/{package}/__init__.py" in names, package
    assert f"{NAMESPACE}/evaluation/reports/templates/evaluation.html.j2" in names
