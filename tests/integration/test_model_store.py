"""Registered models survive a move of the project's modules, and loading one runs no stored code.

A model of every kind is registered by the project's code of an earlier commit (before the layout
change, classes under ``tasks.models`` / ``tasks.registry``; after it, ``tasks.core.models`` /
``tasks.io.registry``), stored the old way: a cloudpickle of those classes. Today's
``load_predictor`` reads each one through the restricted unpickler and scores exactly as the old
code did; stored again today, as data, it loads and scores identically, through
``load_predictor`` and through MLflow's pyfunc interface. The new artifacts hold no pickle.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tasks.io import model_store
from tasks.io.legacy_models import LegacyModelError, predictor_from_legacy_pickle
from tasks.sim.writer import write_recordings
from tasks.stages.data import load_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# earlier commits and the module paths their pickles name: the parent of the model-store split,
# and the last commit of the flat layout
LEGACY_COMMITS = {
    "62b5049": ("tasks.core.models", "tasks.io.registry"),
    "dc76e6f": ("tasks.models", "tasks.registry"),
}
KINDS = ("zscore", "persistence", "har_logistic", "xgboost", "random_forest", "stack")


@pytest.fixture(scope="module")
def frame_path(tmp_path_factory) -> Path:
    """A feature/label frame of 40 simulated minutes, backfilled by today's code."""
    root = tmp_path_factory.mktemp("data")
    write_recordings(root / "recordings", products=("BTC-USD",), seed=5, minutes=40)
    frame, _ = load_frame([str(root / "recordings")], root / "cache")
    path = root / "frame.parquet"
    frame.to_parquet(path)
    return path


def _old_tree(commit: str, target: Path) -> Path:
    """The ``tasks`` package of ``commit``, extracted from git (a skip when history is absent)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "tasks"],
        capture_output=True,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone's history: {archive.stderr.decode()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as handle:
        handle.extractall(target, filter="data")
    return target


@pytest.fixture(scope="module", params=sorted(LEGACY_COMMITS))
def legacy(request, frame_path, tmp_path_factory) -> dict:
    """Every kind registered by the old code into a temporary MLflow store."""
    root = tmp_path_factory.mktemp(f"legacy-{request.param}")
    old = _old_tree(request.param, root / "src")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(old), "MLFLOW_TRACKING_URI": tracking}
    out = root / "legacy.json"
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("legacy_register.py")),
            str(frame_path),
            str(out),
        ],
        env=env,
        cwd=old,
        check=True,
        capture_output=True,
    )
    registered = json.loads(out.read_text())
    registered["rows"] = pd.read_parquet(f"{out}.rows.parquet")
    registered["tracking"] = tracking
    registered["root"] = root
    registered["commit"] = request.param
    return registered


def _pyfunc_flavor(model_dir: Path) -> dict:
    return mlflow.models.Model.load(str(model_dir)).flavors["python_function"]


def test_legacy_versions_load_and_score_like_the_old_code_and_like_their_new_form(legacy, caplog):
    mlflow.set_tracking_uri(legacy["tracking"])
    stored_by = (legacy["models_module"], legacy["registry_module"])
    assert stored_by == LEGACY_COMMITS[legacy["commit"]]
    rows = legacy["rows"]
    for kind in KINDS:
        entry = legacy["kinds"][kind]
        with caplog.at_level(logging.WARNING, logger="cryptovol.model_store"):
            caplog.clear()
            old = model_store.load_predictor(entry["uri"])
        assert "restricted unpickler" in caplog.text and "cryptovol train" in caplog.text
        assert old.kind == kind
        scores = old.predict_proba(rows)
        assert np.array_equal(scores, np.asarray(entry["scores"])), kind

        with mlflow.start_run():
            info = model_store.log_model("model", old, rows.head(20))
        version = mlflow.register_model(info.model_uri, f"stored-{kind}").version
        uri = f"models:/stored-{kind}/{version}"
        new = model_store.load_predictor(uri)
        assert np.array_equal(new.predict_proba(rows), scores), kind
        X = rows.reindex(columns=list(new.feature_names)).to_numpy(float)
        assert np.array_equal(new.predict_array(X), scores), kind
        assert (new.label, new.threshold, new.info) == (old.label, old.threshold, old.info)
        pyfunc = model_store.load_model(uri).predict(rows.reindex(columns=list(new.feature_names)))
        assert list(pyfunc.columns) == ["score"]
        assert np.array_equal(pyfunc["score"].to_numpy(), scores), kind

        model_dir = Path(
            mlflow.artifacts.download_artifacts(uri, dst_path=str(legacy["root"] / kind))
        )
        _assert_no_pickle(model_dir)


def _assert_no_pickle(model_dir: Path) -> None:
    """Nothing in a stored model is a pickle, and its pyfunc loader is source, not a pickle."""
    flavor = _pyfunc_flavor(model_dir)
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("model_code.py")
    files = [p for p in model_dir.rglob("*") if p.is_file()]
    assert any(p.name == "predictor.json" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not data.startswith(b"\x80"), f"{path.name} is a pickle"
        assert path.suffix not in (".pkl", ".pickle", ".joblib")
        if zipfile.is_zipfile(path):  # skops: a zip of JSON and numpy arrays
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    assert not archive.read(name).startswith(b"\x80"), f"{path.name}:{name}"
    document = json.loads(next(p for p in files if p.name == "predictor.json").read_text())
    assert document["format"] == "cryptovol-predictor" and document["feature_names"]


class _RunsCode:
    """A pickle that would run a shell command when unpickled the usual way."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_restricted_unpickler_builds_nothing_it_does_not_know(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(LegacyModelError, match=r"posix\.system|os\.system"):
        predictor_from_legacy_pickle(pickle.dumps(_RunsCode(marker)))
    assert not marker.exists()
    with pytest.raises(LegacyModelError, match="eval"):
        predictor_from_legacy_pickle(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(LegacyModelError, match="unreadable"):
        predictor_from_legacy_pickle(b"not a pickle")
