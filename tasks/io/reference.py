"""The reference for drift: a sample of a model's training feature rows, stored with its run.

Training logs up to :data:`REFERENCE_ROWS` rows of the development part (the rows the final model
learned from; the held-out test part is not in it) as the run artifact
``reference/features.parquet``. Any registered version can then be monitored against the data it
was trained on: :func:`load_reference` resolves a model URI to its version and run and reads the
sample back.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from tasks.core.features import FEATURE_NAMES
from tasks.io import registry
from tasks.settings import Settings

REFERENCE_ARTIFACT_DIR = "reference"
REFERENCE_FILE = "features.parquet"
REFERENCE_ROWS = 5_000
REFERENCE_COLUMNS = ("product_id", "ts", *FEATURE_NAMES)


class ReferenceMissing(LookupError):
    """The model version has no stored training sample (trained before samples were kept)."""


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, resolved from a URI."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def training_sample(
    frame: pd.DataFrame, train_end: str | None, rows: int = REFERENCE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """Up to ``rows`` rows at or before ``train_end`` (all rows without one), drawn at random
    with a fixed seed and kept in time order; only the reference columns."""
    keep = frame
    if train_end:
        keep = frame[pd.to_datetime(frame["ts"], utc=True) <= pd.Timestamp(train_end)]
    if len(keep) > rows:
        picked = np.random.default_rng(seed).choice(len(keep), size=rows, replace=False)
        keep = keep.iloc[np.sort(picked)]
    columns = [c for c in REFERENCE_COLUMNS if c in keep.columns]
    return keep[columns].reset_index(drop=True)


def log_reference_sample(frame: pd.DataFrame, split: dict) -> None:
    """In the active MLflow run: the training sample of ``frame`` as ``reference/features.parquet``
    (``split['train_end']`` bounds the development part)."""
    sample = training_sample(frame, split.get("train_end"))
    with tempfile.TemporaryDirectory(prefix="cryptovol-reference-") as tmp:
        path = Path(tmp) / REFERENCE_FILE
        sample.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), REFERENCE_ARTIFACT_DIR)


def resolve_model(settings: Settings, model_uri: str) -> ModelRef:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> name, version and run."""
    if not model_uri.startswith("models:/"):
        raise ValueError(
            f"expected models:/<name>@<alias> or models:/<name>/<version>: {model_uri}"
        )
    path = model_uri.removeprefix("models:/")
    client = registry.connect(settings)
    if "@" in path:
        name, alias = path.split("@", 1)
        version = registry.alias_version(client, name, alias)
        if version is None:
            raise LookupError(f"{name} has no alias {alias!r}: train and promote a model first")
    else:
        name, _, version = path.partition("/")
        if not version:
            raise ValueError(f"no version or alias in {model_uri}")
    try:
        found = client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        if registry.is_missing(exc):
            raise LookupError(f"no model at {model_uri}: {exc.message[:300]}") from exc
        raise registry.registry_error(exc, settings.tracking_uri, f"reading {model_uri}") from exc
    return ModelRef(name, str(found.version), found.run_id)


def load_reference(settings: Settings, model: ModelRef) -> pd.DataFrame:
    """The training sample stored with ``model``'s run, or :class:`ReferenceMissing`."""
    registry.connect(settings)
    artifact = f"{REFERENCE_ARTIFACT_DIR}/{REFERENCE_FILE}"
    with tempfile.TemporaryDirectory(prefix="cryptovol-reference-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=model.run_id, artifact_path=artifact, dst_path=tmp
            )
        except (OSError, mlflow.exceptions.MlflowException) as exc:
            raise ReferenceMissing(
                f"{model.name} version {model.version} (run {model.run_id}) has no {artifact}: "
                "it was trained before training samples were stored; give --reference PATH"
            ) from exc
        return pd.read_parquet(local)
