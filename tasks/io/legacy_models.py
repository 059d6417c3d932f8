"""Reading models registered before parameters were stored as data (a cloudpickle per model).

Those versions hold ``python_model.pkl``: a pickle of the project's own classes by module path
(``tasks.registry.SpikePyfunc`` around ``tasks.models.SpikePredictor`` before the layout change,
``tasks.io.registry`` / ``tasks.io.model_store`` and ``tasks.core.models`` after it). Unpickled
as MLflow does it, they break when a module moves, and they run whatever code the pickle names.

:func:`predictor_from_legacy_pickle` reads them with a restricted unpickler instead:

- a project class is never imported: each known old name (any of the old module paths) becomes
  an inert record of its pickled attributes, and any other project name is refused;
- besides those, only the numpy, scikit-learn and XGBoost types such a model holds may be built;
  anything else (``os.system``, ``builtins.eval``...) is refused before it is called;
- the records are then turned into today's scorers, parameter by parameter (the same
  coefficients, medians, floors, trees), so the legacy model scores exactly as it did.

Models pickled before the HAR floors existed (commit bffe73d) are refused with a retrain hint.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from tasks.core.models import (
    HarLogistic,
    MeanStack,
    PersistenceBaseline,
    PriorShift,
    RandomForestSpike,
    Scorer,
    SpikePredictor,
    XGBoostParams,
    XGBoostSpike,
    ZScoreBaseline,
    _LogisticOnScore,
)

RETRAIN_HINT = "retrain it with `cryptovol train --data PATHS` to store it as data"
LEGACY_MODEL_MODULES = ("tasks.models", "tasks.core.models")
LEGACY_PYFUNC_MODULES = ("tasks.registry", "tasks.io.registry", "tasks.io.model_store")
LEGACY_CLASSES = (
    "SpikePredictor",
    "PriorShift",
    "MeanStack",
    "HarLogistic",
    "XGBoostSpike",
    "XGBoostParams",
    "RandomForestSpike",
    "PersistenceBaseline",
    "ZScoreBaseline",
    "_LogisticOnScore",
)
# the library types a legacy model holds, and nothing else
SAFE_GLOBALS = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
        ("builtins", "bytearray"),
        ("sklearn.linear_model._logistic", "LogisticRegression"),
        ("sklearn.ensemble._forest", "RandomForestClassifier"),
        ("sklearn.tree._classes", "DecisionTreeClassifier"),
        ("sklearn.tree._tree", "Tree"),
        ("xgboost.sklearn", "XGBClassifier"),
        ("xgboost.core", "Booster"),
    }
)


class LegacyModelError(ValueError):
    """A legacy pickle that cannot be read safely or is of a shape this code does not know."""


class _Record:
    """An inert stand-in for a pickled project object: its old class name and attributes."""

    legacy_name = ""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, "state", {}).get(name, default)


_RECORDS = {
    name: type(f"Legacy{name}", (_Record,), {"legacy_name": name}) for name in LEGACY_CLASSES
}
_PYFUNC = type("LegacySpikePyfunc", (_Record,), {"legacy_name": "SpikePyfunc"})
# what MLflow's PythonModel pickled beside the predictor (its predict type hints): kept inert
_INERT = {
    ("mlflow.models.signature", "_TypeHints"): type("LegacyTypeHints", (_Record,), {}),
    ("pandas.core.frame", "DataFrame"): type("LegacyDataFrameType", (_Record,), {}),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in LEGACY_MODEL_MODULES and name in _RECORDS:
            return _RECORDS[name]
        if module in LEGACY_PYFUNC_MODULES and name == "SpikePyfunc":
            return _PYFUNC
        if (module, name) in _INERT:
            return _INERT[(module, name)]
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise LegacyModelError(
            f"the legacy model refers to {module}.{name}, which is not a type such a model "
            f"holds: refused without building it; {RETRAIN_HINT}"
        )


def _record(value: Any, *names: str) -> _Record:
    if not isinstance(value, _Record) or value.legacy_name not in names:
        found = getattr(value, "legacy_name", type(value).__name__)
        raise LegacyModelError(f"expected {' or '.join(names)}, found {found}; {RETRAIN_HINT}")
    return value


def _calibration(record: _Record) -> _LogisticOnScore:
    cal = _record(record.get("calibration"), "_LogisticOnScore")
    return _LogisticOnScore(float(cal.get("coef")), float(cal.get("intercept")))


def _har(record: _Record, names: tuple[str, ...]) -> HarLogistic:
    if record.get("floors") is None:
        raise LegacyModelError(f"a HAR model from before the log floors; {RETRAIN_HINT}")
    out = HarLogistic(record.get("columns"), record.get("C"))
    out._bind(names)
    for name in ("floors", "medians", "means", "stds"):
        setattr(out, name, np.asarray(record.get(name), dtype=float))
    out.constant = record.get("_constant")
    model = record.get("model")
    if out.constant is None:
        out.coef = np.asarray(model.coef_, dtype=float)
        out.intercept = float(model.intercept_[0])
    return out


def _xgboost(record: _Record, names: tuple[str, ...]) -> XGBoostSpike:
    params = _record(record.get("params"), "XGBoostParams").state
    fields = set(XGBoostParams.__dataclass_fields__)
    out = XGBoostSpike(XGBoostParams(**{k: v for k, v in params.items() if k in fields}))
    out.seed = record.get("seed", 0)
    out.feature_names = names
    out.best_rounds, out.early_stopped = record.get("best_rounds"), record.get("early_stopped")
    out.constant = record.get("_constant")
    if out.constant is None:
        # the legacy wrapper predicted with the trees up to the best round only
        out.booster = record.get("model").get_booster()[: out.best_rounds]
        out.booster.set_param({"nthread": out.params.n_jobs})
    return out


def _forest(record: _Record, names: tuple[str, ...]) -> RandomForestSpike:
    out = RandomForestSpike(record.get("seed", 0), record.get("n_estimators", 100))
    out.feature_names = names
    out.constant = record.get("_constant")
    out.model = record.get("model")
    return out


def _scorer(value: Any, names: tuple[str, ...]) -> Scorer:
    record = _record(value, *LEGACY_CLASSES)
    kind = record.legacy_name
    if kind == "PriorShift":
        return PriorShift(_scorer(record.get("base"), names), float(record.get("shift")))
    if kind == "MeanStack":
        return MeanStack([_scorer(m, names) for m in record.get("members")])
    if kind in ("PersistenceBaseline", "ZScoreBaseline"):
        out = PersistenceBaseline() if kind == "PersistenceBaseline" else ZScoreBaseline()
        out.feature_names = names
        out.calibration = _calibration(record)
        if kind == "PersistenceBaseline":
            out.fill = float(record.get("fill"))
        else:
            out.mu, out.sd = float(record.get("mu")), float(record.get("sd"))
        return out
    if kind == "HarLogistic":
        return _har(record, names)
    if kind == "XGBoostSpike":
        return _xgboost(record, names)
    if kind == "RandomForestSpike":
        return _forest(record, names)
    raise LegacyModelError(f"a legacy {kind} is not a scorer; {RETRAIN_HINT}")


def predictor_from_legacy_pickle(data: bytes) -> SpikePredictor:
    """Today's predictor with the parameters of a legacy ``python_model.pkl``."""
    try:
        top = _RestrictedUnpickler(io.BytesIO(data)).load()
    except LegacyModelError:
        raise
    except Exception as exc:  # a corrupt or foreign pickle: say so, do not crash the caller
        raise LegacyModelError(f"unreadable legacy model ({exc!r}); {RETRAIN_HINT}") from exc
    wrapper = _record(top, "SpikePyfunc")
    old = _record(wrapper.get("predictor"), "SpikePredictor")
    names = tuple(old.get("feature_names"))
    return SpikePredictor(
        kind=old.get("kind"),
        estimator=_scorer(old.get("estimator"), names),
        label=dict(old.get("label")),
        threshold=float(old.get("threshold")),
        feature_names=names,
        feature_set_version=old.get("feature_set_version"),
        info=dict(old.get("info") or {}),
    )
