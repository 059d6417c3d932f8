"""Tree scorers: gradient-boosted trees (XGBoost) and a Random Forest (scikit-learn). Pure.

Both handle NaN natively. Their fitted trees are stored in the libraries' own formats: XGBoost's
UBJSON (only the trees up to the best round), and skops for the forest, whose loader builds only
the scikit-learn types in :data:`FOREST_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from tasks.core.scorer import Scorer, blob_name, fit_array

# what a stored random forest may contain: skops refuses any other type when loading it
FOREST_TYPES = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)


@dataclass
class XGBoostParams:
    n_estimators: int = 600
    learning_rate: float = 0.05
    max_depth: int = 3
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    early_stopping_rounds: int = 50
    # one thread: on a busy 2-core machine two OpenMP threads ran 6-15x slower (spin waits)
    n_jobs: int = 1
    increasing_in: tuple[str, ...] = ()  # features the probability may only rise with

    def constraints(self, feature_names) -> tuple[int, ...] | None:
        """XGBoost's monotone constraints for these features (None without any)."""
        if not self.increasing_in:
            return None
        return tuple(int(name in self.increasing_in) for name in feature_names)


def _single_class_rate(y: np.ndarray) -> float | None:
    """The constant a tree model predicts when its labels hold one class (it cannot be fit)."""
    if len(np.unique(y)) >= 2:
        return None
    return float(np.mean(y)) if len(y) else 0.5


class XGBoostSpike(Scorer):
    """Gradient-boosted trees (hist, NaN native). Early stopping only on a validation part.

    ``eval_set`` is the embargoed tail of the training part (never the rows candidates are ranked
    on); without one it trains ``n_estimators`` rounds.
    Only the trees up to the best round are kept; stored in XGBoost's own UBJSON format.
    """

    type_name = "xgboost"

    def __init__(self, params: XGBoostParams | None = None, seed: int = 0) -> None:
        self.params = params or XGBoostParams()
        self.seed = seed
        self.booster = None
        self.best_rounds: int | None = None
        self.early_stopped = False
        self.constant: float | None = None

    def fit(self, X, y, eval_set=None, target=None) -> XGBoostSpike:
        from xgboost import XGBClassifier

        y = np.asarray(y, dtype=float)
        self.feature_names = tuple(X.columns)
        self.constant = _single_class_rate(y)
        if self.constant is not None:
            return self
        p = self.params
        early = eval_set is not None and len(np.unique(eval_set[1])) == 2
        self.early_stopped = early
        model = XGBClassifier(
            n_estimators=p.n_estimators,
            learning_rate=p.learning_rate,
            max_depth=p.max_depth,
            min_child_weight=p.min_child_weight,
            subsample=p.subsample,
            colsample_bytree=p.colsample_bytree,
            reg_lambda=p.reg_lambda,
            tree_method="hist",
            n_jobs=p.n_jobs,
            random_state=self.seed,
            eval_metric="aucpr",
            monotone_constraints=p.constraints(self.feature_names),
            early_stopping_rounds=p.early_stopping_rounds if early else None,
        )
        if early:
            Xv, yv = eval_set
            model.fit(fit_array(X), y, eval_set=[(fit_array(Xv), yv)], verbose=False)
            self.best_rounds = int(model.best_iteration) + 1
        else:
            model.fit(fit_array(X), y, verbose=False)
            self.best_rounds = p.n_estimators
        self.booster = model.get_booster()[: self.best_rounds]
        self.booster.set_param({"nthread": p.n_jobs})
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(A), self.constant)
        return np.asarray(self.booster.inplace_predict(A), dtype=float)

    def importance(self) -> dict[str, float]:
        if self.booster is None:
            return {}
        gains = self.booster.get_score(importance_type="gain")
        return {self.feature_names[int(k[1:])]: float(v) for k, v in gains.items()}

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        booster = None
        if self.booster is not None:
            booster = blob_name(blobs, "xgboost", "ubj")
            blobs[booster] = bytes(self.booster.save_raw(raw_format="ubj"))
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "booster": booster,
            "best_rounds": self.best_rounds,
            "early_stopped": self.early_stopped,
            "constant": self.constant,
            "params": asdict(self.params),
            "seed": self.seed,
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> XGBoostSpike:
        stored = dict(params["params"])
        stored["increasing_in"] = tuple(stored.get("increasing_in", ()))
        out = cls(XGBoostParams(**stored), params["seed"])
        out.feature_names = tuple(params["feature_names"])
        out.best_rounds, out.early_stopped = params["best_rounds"], params["early_stopped"]
        out.constant = params["constant"]
        if params["booster"] is not None:
            out.booster = booster_from_bytes(blobs[params["booster"]], out.params.n_jobs)
        return out


def booster_from_bytes(raw: bytes, nthread: int = 1):
    """An XGBoost booster from its own format (UBJSON or JSON bytes)."""
    from xgboost import Booster

    booster = Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": nthread})
    return booster


class RandomForestSpike(Scorer):
    """A shallow Random Forest with wide leaves (scikit-learn handles NaN natively).

    Stored with skops, whose loader builds only the scikit-learn types in :data:`FOREST_TYPES`.
    """

    type_name = "random_forest"

    def __init__(self, seed: int = 0, n_estimators: int = 100, n_jobs: int = 1) -> None:
        self.seed = seed
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.model: RandomForestClassifier | None = None
        self.constant: float | None = None

    def fit(self, X, y, eval_set=None, target=None) -> RandomForestSpike:
        y = np.asarray(y, dtype=float)
        self.feature_names = tuple(X.columns)
        self.constant = _single_class_rate(y)
        if self.constant is not None:
            return self
        self.model = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=8,
            min_samples_leaf=50,
            max_features=0.3,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )
        self.model.fit(fit_array(X), y)
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(A), self.constant)
        return self.model.predict_proba(A)[:, 1]

    def importance(self) -> dict[str, float]:
        if self.model is None:
            return {}
        pairs = zip(self.feature_names, self.model.feature_importances_, strict=True)
        return {name: float(value) for name, value in pairs}

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        forest = None
        if self.model is not None:
            import skops.io

            forest = blob_name(blobs, "forest", "skops")
            blobs[forest] = skops.io.dumps(self.model)
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "forest": forest,
            "constant": self.constant,
            "seed": self.seed,
            "n_estimators": self.n_estimators,
            "n_jobs": self.n_jobs,
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> RandomForestSpike:
        out = cls(params["seed"], params["n_estimators"], params["n_jobs"])
        out.feature_names = tuple(params["feature_names"])
        out.constant = params["constant"]
        if params["forest"] is not None:
            import skops.io

            out.model = skops.io.loads(blobs[params["forest"]], trusted=list(FOREST_TYPES))
        return out
