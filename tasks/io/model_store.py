"""Storing and loading models: a :class:`SpikePredictor` as data, in an MLflow pyfunc model.

A stored model is MLflow's *models from code*: the pyfunc flavor's loader is the source file
``tasks/io/model_code.py`` (logged with the model) and the fitted parameters are data in the
model's ``artifacts/predictor/`` folder:

- ``predictor.json``: kind, feature order, feature-set version, label (tau...), threshold, info,
  and every scorer's parameters (coefficients, medians, floors, means, standard deviations...);
- the binary parts, each in its library's own format: ``xgboost-<n>.ubj`` (XGBoost UBJSON),
  ``forest-<n>.skops`` (scikit-learn forests through skops, loaded with a list of trusted types).

Nothing is a pickle of the project's classes, so moving a module breaks no registered version and
loading one runs no code that came with it. :func:`load_predictor` is the one way the project
loads a model: it reads the data with the installed code and never executes the stored loader.
``mlflow.pyfunc.load_model`` (:func:`load_model`) gives the same scores through MLflow's
interface: ``predict`` returns a ``score`` column of probabilities, not classes.

What a stored model says is not trusted: a path in its ``MLmodel`` (the predictor folder, a legacy
pickle) that is absolute or climbs out of the model's folder (``..``, a symlink) is refused, and
so is a predictor whose threshold is not a probability (NaN, infinite, outside [0, 1]): it would
flag every row or none.

Versions registered before this format (a cloudpickle of the project's classes) still load, with
a warning, through the restricted reader of :mod:`tasks.io.legacy_models`.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema

from tasks.core.models import SpikePredictor, feature_matrix

log = logging.getLogger("cryptovol.model_store")

PREDICTOR_ARTIFACT = "predictor"
DOCUMENT_FILE = "predictor.json"
LOADER_CODE = Path(__file__).with_name("model_code.py")
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "xgboost", "skops")


class ModelLoadError(RuntimeError):
    """A model URI does not hold a model this project can read."""


def _requirements() -> list[str]:
    pins = []
    for dist in _REQUIREMENTS:
        try:
            pins.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def write_predictor(predictor: SpikePredictor, directory: Path) -> Path:
    """The predictor as files in ``directory``: ``predictor.json`` and its binary parts."""
    directory.mkdir(parents=True, exist_ok=True)
    document, blobs = predictor.to_document()
    for name, data in blobs.items():
        (directory / name).write_bytes(data)
    (directory / DOCUMENT_FILE).write_text(json.dumps(document, indent=1, allow_nan=False))
    return directory


def read_predictor(directory: str | Path) -> SpikePredictor:
    """The predictor stored in ``directory`` by :func:`write_predictor`."""
    directory = Path(directory)
    document = json.loads((directory / DOCUMENT_FILE).read_text())
    blobs = {p.name: p.read_bytes() for p in directory.iterdir() if p.name != DOCUMENT_FILE}
    return SpikePredictor.from_document(document, blobs)


def signature_for(predictor: SpikePredictor) -> ModelSignature:
    inputs = Schema([ColSpec("double", name, required=False) for name in predictor.feature_names])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "score")]))


def _input_example(frame: pd.DataFrame, predictor: SpikePredictor) -> pd.DataFrame:
    X = feature_matrix(frame, predictor.feature_names)
    complete = X.dropna()
    return (complete if len(complete) else X.fillna(0.0)).head(2).reset_index(drop=True)


def log_model(name: str, predictor: SpikePredictor, example: pd.DataFrame):
    """Log the predictor in the active run as a models-from-code pyfunc model; its ModelInfo."""
    with tempfile.TemporaryDirectory(prefix="cryptovol-model-") as tmp:
        folder = write_predictor(predictor, Path(tmp) / PREDICTOR_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(LOADER_CODE),
            artifacts={PREDICTOR_ARTIFACT: str(folder)},
            signature=signature_for(predictor),
            input_example=_input_example(example, predictor),
            pip_requirements=_requirements(),
            metadata=predictor.metadata(),
        )


def _inside(root: Path, stored: object, uri: str, what: str) -> Path:
    """``root / stored`` if it stays inside ``root`` once resolved, else :class:`ModelLoadError`."""
    if not isinstance(stored, str) or not stored:
        raise ModelLoadError(f"{uri}: its MLmodel gives no {what} path")
    path = (root / stored).resolve()
    if Path(stored).is_absolute() or not path.is_relative_to(root.resolve()):
        raise ModelLoadError(
            f"{uri}: its MLmodel points the {what} at {stored!r}, outside the model's own "
            f"files; refusing to read it"
        )
    return path


def _path_of(entry: object) -> object:
    return entry.get("path") if isinstance(entry, dict) else None


def _checked_blobs(folder: Path, uri: str) -> None:
    for part in folder.iterdir():
        _inside(folder, part.name, uri, f"predictor part {part.name!r}")


def check_servable(predictor: SpikePredictor, uri: str) -> SpikePredictor:
    """The predictor if its threshold is a probability, else :class:`ModelLoadError` saying so."""
    threshold = float(predictor.threshold)
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ModelLoadError(
            f"{uri}: its threshold is {threshold!r}, not a probability in [0, 1]; "
            f"a model that would flag every row or none is not served"
        )
    return predictor


def load_model(uri: str):
    """The pyfunc face of a model URI, as MLflow loads it (runs the stored loader)."""
    return mlflow.pyfunc.load_model(uri)


def load_predictor(uri: str) -> SpikePredictor:
    """The predictor behind a model URI (``models:/volatility-spike@champion``, ``runs:/...``).

    Reads the stored parameters with the installed code; runs nothing that came with the model.
    """
    from tasks.io.legacy_models import predictor_from_legacy_pickle

    with tempfile.TemporaryDirectory(prefix="cryptovol-load-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except mlflow.exceptions.MlflowException as exc:
            raise ModelLoadError(f"cannot fetch {uri}: {exc.message}") from exc
        try:
            flavor = Model.load(str(local)).flavors["python_function"]
        except (OSError, KeyError) as exc:
            raise ModelLoadError(f"{uri} is not an MLflow pyfunc model") from exc
        stored = flavor.get("artifacts", {}).get(PREDICTOR_ARTIFACT)
        if stored is not None:
            folder = _inside(local, _path_of(stored), uri, "predictor")
            _checked_blobs(folder, uri)
            return check_servable(read_predictor(folder), uri)
        if "python_model" in flavor:
            pickled = _inside(local, flavor["python_model"], uri, "legacy model")
            log.warning(
                "%s is stored as a pickle of the project's classes (registered before models "
                "were stored as data); it was read by a restricted unpickler that builds none of "
                "the project's classes. Retrain to store it as data: cryptovol train --data PATHS",
                uri,
            )
            return check_servable(predictor_from_legacy_pickle(pickled.read_bytes()), uri)
        raise ModelLoadError(f"{uri} holds neither a predictor document nor a legacy model")
