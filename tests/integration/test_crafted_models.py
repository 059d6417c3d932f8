"""Crafted model artifacts: the loader refuses a predictor path in ``MLmodel`` that leaves the
model's own files (absolute, or climbing with ``..``), and a predictor whose threshold is not a
probability; the service keeps serving its model and ``/health`` names the version it cannot load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import pytest
from serving_support import fitted_har_rv, get, predict, wait_for

from tasks.io import model_store, registry
from tasks.stages.promote import promote

pytestmark = pytest.mark.integration


def _mlmodel(model_dir: Path, predictor_path: str) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.pyfunc.model\n"
        "    artifacts:\n"
        "      predictor:\n"
        f"        path: {json.dumps(predictor_path)}\n"
        "        uri: predictor\n"
    )
    return model_dir


@pytest.fixture
def outside(tmp_path) -> Path:
    """A readable predictor folder that belongs to no model."""
    predictor, _ = fitted_har_rv()
    return model_store.write_predictor(predictor, tmp_path / "outside" / "predictor")


def _climbing(target: Path) -> str:
    """A relative path from the loader's download folder (``<tmp>/cryptovol-load-*/<name>``)
    to ``target``."""
    return "../../" + os.path.relpath(target, tempfile.gettempdir())


@pytest.mark.parametrize("kind", ["absolute", "climbing"])
def test_a_predictor_path_outside_the_model_is_refused(tmp_path, outside, kind):
    path = str(outside) if kind == "absolute" else _climbing(outside)
    crafted = _mlmodel(tmp_path / "crafted", path)
    with pytest.raises(model_store.ModelLoadError, match="outside the model's own files"):
        model_store.load_predictor(str(crafted))


def test_a_predictor_inside_the_model_loads(tmp_path, outside):
    crafted = _mlmodel(tmp_path / "fine", "artifacts/predictor")
    shutil.copytree(outside, crafted / "artifacts" / "predictor")
    assert model_store.load_predictor(str(crafted)).kind == "har_rv"


def _with_threshold(predictor_dir: Path, threshold: float) -> None:
    document = predictor_dir / model_store.DOCUMENT_FILE
    data = json.loads(document.read_text())
    data["threshold"] = threshold
    document.write_text(json.dumps(data))  # NaN written as the bare token, as json allows


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -0.5, 1.5])
def test_a_threshold_that_is_not_a_probability_is_refused(tmp_path, outside, threshold):
    crafted = _mlmodel(tmp_path / "crafted", "artifacts/predictor")
    shutil.copytree(outside, crafted / "artifacts" / "predictor")
    _with_threshold(crafted / "artifacts" / "predictor", threshold)
    with pytest.raises(model_store.ModelLoadError, match="not a probability"):
        model_store.load_predictor(str(crafted))


def _register_nan_threshold_copy(settings, version: str, work: Path) -> str:
    """A new version of the model: a copy of ``version``'s files with threshold NaN, logged as
    plain artifacts of a run (the project's own writer refuses NaN)."""
    client = registry.connect(settings)
    name = registry.model_name(settings)
    local = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=work)
    )
    _with_threshold(local / "artifacts" / "predictor", math.nan)
    experiment = registry.experiment_id(settings, client)
    with mlflow.start_run(experiment_id=experiment, run_name="tests-nan-threshold") as run:
        mlflow.log_artifacts(str(local), "model")
    made = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    return str(made.version)


def test_an_unloadable_champion_leaves_the_service_degraded_and_serving(
    bento, serving_stack, tmp_path
):
    settings = serving_stack.settings
    first = serving_stack.versions[0]
    assert get(bento, "/version").json()["version"] == first
    broken = _register_nan_threshold_copy(settings, first, tmp_path)
    promote(settings, broken, force=True, who="tests", why="crafted NaN threshold")
    try:
        health = wait_for(
            lambda: (h := get(bento, "/health").json())["status"] == "degraded" and h, 60
        )
        assert health, get(bento, "/health").json()
        assert health["unloadable_version"] == broken and health["version"] == first
        assert f"version {broken}, which cannot be loaded" in health["reason"]
        assert "threshold is nan" in health["reason"]
        answer = predict(bento, {"rows": [{"ret_mean": 0.01, "n": 50}]})
        assert answer.status_code == 200 and answer.json()["version"] == first
    finally:
        promote(settings, first, force=True, who="tests", why="restore")
    healthy = wait_for(lambda: get(bento, "/health").json()["status"] == "healthy", 60)
    assert healthy, get(bento, "/health").json()
