"""Register one model of every kind with the project's code of an EARLIER commit.

Run by ``test_model_store.py`` with that commit's ``tasks`` package (from ``git archive``) first on
``PYTHONPATH``, so the models are stored exactly as that code stored them: a cloudpickle of the
classes under their old module paths (``tasks.models`` / ``tasks.registry`` before the layout
change, ``tasks.core.models`` / ``tasks.io.registry`` after it).

Usage: ``python legacy_register.py FRAME.parquet OUT.json`` with ``MLFLOW_TRACKING_URI`` set.
Writes, per kind, the registered model URI and the scores the old code gives on held-out rows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import mlflow
import pandas as pd

try:  # after the layout change (tasks/core, tasks/io)
    from tasks.core import models
    from tasks.core.labels import LabelSpec
    from tasks.io import registry
except ImportError:  # before it: one flat package
    from tasks.labels import LabelSpec

    from tasks import models, registry

KINDS = ("zscore", "persistence", "har_logistic", "xgboost", "random_forest", "stack")


def main(frame_path: str, out_path: str) -> None:
    frame = pd.read_parquet(frame_path)
    frame = frame[frame["fwd_vol_60"].notna()].sort_values("ts").reset_index(drop=True)
    cut = int(len(frame) * 0.6)
    train, held_out = frame.iloc[:cut], frame.iloc[cut:]
    spec = LabelSpec().fit(train)
    X, y = models.feature_matrix(train), spec.apply(train).to_numpy()
    Xv, yv = models.feature_matrix(held_out), spec.apply(held_out).to_numpy()
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    artifacts = Path(out_path).with_suffix(".artifacts").resolve().as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("legacy", artifacts))
    out = {"models_module": models.__name__, "registry_module": registry.__name__, "kinds": {}}
    for kind in KINDS:
        params = models.XGBoostParams(n_estimators=300, early_stopping_rounds=10)
        estimator = models.make_estimator(kind, xgb=params).fit(X, y, (Xv, yv))
        estimator = models.PriorShift.to_rate(estimator, X.tail(600), 0.08)
        predictor = models.SpikePredictor(
            kind, estimator, spec.to_dict(), 0.3, info={"train_end": str(train["ts"].max())}
        )
        with mlflow.start_run():
            info = registry._log_model("model", predictor, train.head(20))
        version = mlflow.register_model(info.model_uri, f"legacy-{kind}")
        out["kinds"][kind] = {
            "uri": f"models:/legacy-{kind}/{version.version}",
            "scores": predictor.predict_proba(held_out).tolist(),
        }
    held_out.to_parquet(out_path + ".rows.parquet")
    with open(out_path, "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
