"""The purity rule follows the folders: every module under ``tasks/core`` (and the pure part of
``tasks/sim``) imports no I/O library, so the stream and batch paths share them and unit tests
need no services. Modules are found by walking the packages, each imported in a fresh interpreter
and its imports inspected; layers never import upward."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tasks
import tasks.core
import tasks.sim

ROOT = Path(tasks.__file__).resolve().parent
IO_LIBRARIES = [
    "confluent_kafka",
    "websockets",
    "prefect",
    "mlflow",
    "bentoml",
    "requests",
    "httpx",
    "urllib3",
    "aiohttp",
    "great_expectations",
    "evidently",
]
# Which layers each layer may import (besides the standard library and third-party packages).
LAYERS = {
    "core": {"core"},
    "sim": {"core", "sim"},
    "io": {"core", "io", "settings"},
    "services": {"core", "io", "sim", "services", "settings"},
    "stages": {"core", "io", "stages", "settings"},
}


def _pure_modules() -> list[str]:
    core = [m.name for m in pkgutil.walk_packages(tasks.core.__path__, "tasks.core.")]
    sim = [
        m.name
        for m in pkgutil.walk_packages(tasks.sim.__path__, "tasks.sim.")
        if m.name.rsplit(".", 1)[-1] not in tasks.sim.IO_MODULES
    ]
    return ["tasks.core", *core, *sim]


def test_the_walk_finds_the_domain():
    found = _pure_modules()
    for module in ("tasks.core.features", "tasks.core.models", "tasks.sim.simulator"):
        assert module in found


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_module_imports_no_io_library(module):
    code = (
        "import importlib, json, sys\n"
        f"before = set(sys.modules)\nimportlib.import_module({module!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert not loaded & set(IO_LIBRARIES), f"{module} pulls in {sorted(loaded & set(IO_LIBRARIES))}"


def _project_imports(path: Path) -> set[str]:
    """The ``tasks.<layer>`` names a module imports (at any depth, lazy imports included)."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tasks" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_no_layer_imports_upward(layer):
    for path in sorted((ROOT / layer).rglob("*.py")):
        allowed = LAYERS[layer]
        if layer == "sim" and path.stem in tasks.sim.IO_MODULES:
            allowed = allowed | {"io", "settings"}
        upward = _project_imports(path) - allowed
        assert not upward, f"{path.relative_to(ROOT.parent)} imports tasks.{sorted(upward)}"


def test_importing_the_cli_and_settings_has_no_side_effects(tmp_path):
    code = "import tasks.cli, tasks.settings; tasks.settings.get_settings()"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []


def _module_imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (lazy imports included)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        )
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return graph


def test_the_import_graph_has_no_cycle():
    graph = _module_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [target]
                raise AssertionError(" -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
