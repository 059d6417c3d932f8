"""Pure modules import no I/O library, so the stream and batch paths share them and unit tests
need no services. Each module is imported in a fresh interpreter and its imports inspected."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE_MODULES = [
    "tasks.messages",
    "tasks.timeutil",
    "tasks.features",
    "tasks.labels",
    "tasks.simulator",
    "tasks.market_stats",
    "tasks.evaluation",
    "tasks.models",
    "tasks.training",
    "tasks.gates",
]
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


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io_library(module):
    code = (
        "import importlib, json, sys\n"
        f"before = set(sys.modules)\nimportlib.import_module({module!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert not loaded & set(IO_LIBRARIES), f"{module} pulls in {sorted(loaded & set(IO_LIBRARIES))}"


def test_importing_the_cli_and_settings_has_no_side_effects(tmp_path):
    code = "import tasks.cli, tasks.settings; tasks.settings.get_settings()"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []
