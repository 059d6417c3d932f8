"""Storing and loading models: a :class:`SpikePredictor` as an MLflow pyfunc model.

``predict`` of the pyfunc model returns probabilities (a ``score`` column), not classes.
:func:`load_predictor` is the one way the project loads a model for scoring: the pure predictor,
unwrapped once, so callers score small numeric arrays without MLflow's schema enforcement.
"""

from __future__ import annotations

from importlib import metadata as importlib_metadata

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from tasks.core.models import SpikePredictor, feature_matrix

_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "xgboost", "cloudpickle")


def _requirements() -> list[str]:
    pins = []
    for dist in _REQUIREMENTS:
        try:
            pins.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


class SpikePyfunc(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a :class:`SpikePredictor`: returns probabilities, not classes.

    ``predict`` returns a DataFrame with one column ``score`` (the spike probability). Inputs are
    feature columns by name as float64 (``tasks.core.models.feature_matrix`` builds them); columns
    missing from the input are NaN, extra ones are ignored.
    """

    def __init__(self, predictor: SpikePredictor) -> None:
        self.predictor = predictor

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return pd.DataFrame({"score": self.predictor.predict_proba(model_input)})


def signature_for(predictor: SpikePredictor) -> ModelSignature:
    inputs = Schema([ColSpec("double", name, required=False) for name in predictor.feature_names])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "score")]))


def _input_example(frame: pd.DataFrame, predictor: SpikePredictor) -> pd.DataFrame:
    X = feature_matrix(frame, predictor.feature_names)
    complete = X.dropna()
    return (complete if len(complete) else X.fillna(0.0)).head(2).reset_index(drop=True)


def log_model(name: str, predictor: SpikePredictor, example: pd.DataFrame):
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=SpikePyfunc(predictor),
        signature=signature_for(predictor),
        input_example=_input_example(example, predictor),
        pip_requirements=_requirements(),
        metadata=predictor.metadata(),
    )


def load_model(uri: str):
    """The pyfunc model behind a URI (``models:/volatility-spike@champion``, ``runs:/...``)."""
    return mlflow.pyfunc.load_model(uri)


def predictor_of(model) -> SpikePredictor:
    """The :class:`SpikePredictor` inside a loaded pyfunc model (its label, threshold...)."""
    return model.unwrap_python_model().predictor


def pyfunc_scores(model, predictor, frame: pd.DataFrame) -> np.ndarray:
    """Scores through the pyfunc interface, exactly as served (schema enforced)."""
    out = model.predict(feature_matrix(frame, predictor.feature_names))
    return np.asarray(out["score"] if isinstance(out, pd.DataFrame) else out, dtype=float).ravel()


def load_predictor(uri: str) -> SpikePredictor:
    """The pure predictor behind a model URI (``models:/volatility-spike@champion``, ``runs:/``)."""
    return predictor_of(load_model(uri))
