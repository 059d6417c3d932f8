"""The training pipeline: data -> labels -> folds -> candidates -> selection -> final fit.

Pure in the sense that matters here: a feature frame in, a :class:`TrainResult` out, no MLflow and
no files (``tasks.io.registry`` logs and registers the result).

Honesty rules kept here:

- time-ordered walk-forward folds over all products with an embargo of the longest feature
  window plus the horizon between what a model learns from and what it is judged on;
- tau (the label threshold) fitted on each training part only, then applied to its validation
  part; the final tau on the development part only;
- early stopping on validation folds only; the final XGBoost gets the median of the rounds the
  folds chose, never rounds chosen on the test part;
- the candidate is chosen by mean validation PR-AUC, the operating threshold as the median of
  the thresholds maximising F1 on each validation fold; the test part (the most recent rows)
  is touched once, for the reported figures, with both baselines scored on the same rows;
- folds without a spike are flagged degenerate, counted and left out of means.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from tasks.core.evaluation import (
    FoldResult,
    FoldSummary,
    SplitPlan,
    choose_threshold,
    classifier_metrics,
    embargo_for,
    epoch_seconds,
    is_degenerate,
    probability_metrics,
    ranking_metrics,
    summarize_folds,
    walk_forward_splits,
)
from tasks.core.features import FEATURE_SET_VERSION
from tasks.core.labels import LabelSpec
from tasks.core.models import (
    BASELINES,
    CANDIDATES,
    MeanStack,
    PriorShift,
    SpikePredictor,
    XGBoostParams,
    feature_matrix,
    make_estimator,
)

log = logging.getLogger("cryptovol.training")

# Simpler first: a later candidate is chosen only if it beats the current pick by ``min_gain``.
COMPLEXITY_ORDER = ("har_logistic", "xgboost", "random_forest", "stack")
STACK_MEMBERS = ("har_logistic", "xgboost")


class TrainingError(ValueError):
    """The data cannot be trained on honestly (too short, no labels, no spikes)."""


@dataclass(frozen=True)
class TrainConfig:
    label_mode: str = "absolute"
    horizon_s: int = 60
    quantile: float = 0.9
    k: float = 2.0
    trailing_s: int = 900
    tau_window_s: float | None = 3600.0  # fit tau on the last this many seconds of training rows
    n_folds: int = 4
    test_fraction: float = 0.2
    embargo_s: float | None = None  # default: longest feature window + horizon
    train_step_s: int = 2  # keep one training row every this many seconds per product
    candidates: tuple[str, ...] = CANDIDATES
    min_gain: float = 0.005
    min_precision: float | None = None  # None: threshold at max F1
    seed: int = 0
    shuffle_labels: bool = False  # a deliberately degraded model, to check that gates refuse it
    xgboost: XGBoostParams = field(default_factory=XGBoostParams)

    @property
    def embargo(self) -> float:
        if self.embargo_s is not None:
            return float(self.embargo_s)
        return embargo_for(self.horizon_s)

    def label_spec(self) -> LabelSpec:
        return LabelSpec(
            mode=self.label_mode,
            horizon_s=self.horizon_s,
            quantile=self.quantile,
            k=self.k,
            trailing_s=self.trailing_s,
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["embargo_s"] = self.embargo
        out["candidates"] = list(self.candidates)
        return out


@dataclass
class CandidateReport:
    """A scorer's validation figures fold by fold and summarised."""

    name: str
    folds: list[FoldResult]
    summaries: dict[str, FoldSummary]

    @property
    def mean_pr_auc(self) -> float | None:
        return self.summaries["pr_auc"].mean

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "folds": [{"fold": f.fold, **f.metrics} for f in self.folds],
            "summary": {k: v.to_dict() for k, v in self.summaries.items()},
        }


@dataclass
class TrainResult:
    predictor: SpikePredictor  # the selected candidate, fit on the development part
    baseline: SpikePredictor  # the z-score baseline, fit on the same rows (the served fallback)
    selected: str
    reports: dict[str, CandidateReport]  # every candidate and baseline on the folds
    test_metrics: dict[str, dict]  # "model", "zscore", "persistence" on the same test rows
    label: dict  # the label spec fitted on the development part (tau included)
    split: dict
    data: dict
    timings: dict
    config: TrainConfig
    test_scores: pd.DataFrame  # y, model, zscore, persistence, ts, product_id of the test rows
    notes: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return self.predictor.threshold

    def summary(self) -> dict:
        """The JSON-able figures: what ``cryptovol train --json`` prints and MLflow logs."""
        model = self.test_metrics["model"]
        return {
            "selected": self.selected,
            "test": {
                "pr_auc": model["pr_auc"],
                "baseline_pr_auc": self.test_metrics["zscore"]["pr_auc"],
                "persistence_pr_auc": self.test_metrics["persistence"]["pr_auc"],
                "roc_auc": model["roc_auc"],
                "brier": model["brier"],
                "log_loss": model["log_loss"],
                "precision": model["precision"],
                "recall": model["recall"],
                "threshold": self.threshold,
                "positive_rate": model["positive_rate"],
                "rows": model["rows"],
                "degenerate": model["degenerate"],
            },
            "validation": {
                name: {
                    "pr_auc_mean": r.summaries["pr_auc"].mean,
                    "pr_auc_std": r.summaries["pr_auc"].std,
                    "pr_auc_folds": r.summaries["pr_auc"].values,
                    "degenerate_folds": r.summaries["pr_auc"].n_degenerate,
                }
                for name, r in self.reports.items()
            },
            "folds": [
                {
                    "fold": f.fold,
                    "rows": f.metrics["rows"],
                    "positives": f.metrics["positives"],
                    "positive_rate": f.metrics["positive_rate"],
                    "tau": f.metrics["tau"],
                    "degenerate": f.metrics["degenerate"],
                }
                for f in next(iter(self.reports.values())).folds
            ],
            "label": self.label,
            "data": self.data,
            "split": {k: v for k, v in self.split.items() if k != "folds"},
            "timings_s": self.timings,
            "notes": self.notes,
        }


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of which rows and labels a model saw (product, time, forward volatility)."""
    cols = [c for c in ("product_id", "ts", "fwd_vol_60") if c in frame]
    hashed = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def describe_data(frame: pd.DataFrame) -> dict:
    ts = pd.to_datetime(frame["ts"], utc=True)
    return {
        "rows": len(frame),
        "labelled_rows": int(frame["fwd_vol_60"].notna().sum()) if "fwd_vol_60" in frame else 0,
        "products": sorted(map(str, frame["product_id"].unique())),
        "sources": int(frame["source"].nunique()) if "source" in frame else None,
        "start": ts.min().isoformat() if len(ts) else None,
        "end": ts.max().isoformat() if len(ts) else None,
        "fingerprint": data_fingerprint(frame),
        "feature_set_version": FEATURE_SET_VERSION,
    }


def _subsample(frame: pd.DataFrame, step_s: int) -> pd.DataFrame:
    if step_s <= 1:
        return frame
    seconds = np.floor(epoch_seconds(frame["ts"])).astype(np.int64)
    return frame[seconds % step_s == 0]


def _fit_label(spec: LabelSpec, train_rows: pd.DataFrame, window_s: float | None) -> LabelSpec:
    """Tau from the most recent ``window_s`` of the training rows (all of them when None)."""
    if window_s is None:
        return spec.fit(train_rows)
    seconds = epoch_seconds(train_rows["ts"])
    return spec.fit(train_rows[seconds > seconds.max() - window_s])


def _shuffled(y: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(y)


def _fit_scorers(
    kinds: tuple[str, ...],
    train: pd.DataFrame,
    y_train: np.ndarray,
    eval_set: tuple[pd.DataFrame, np.ndarray] | None,
    config: TrainConfig,
    xgb_rounds: int | None = None,
) -> dict:
    """Fit one estimator per kind (the stack is built from its fitted members, not refit).

    With a tau window, each is prior-shifted so its mean probability on the window's rows equals
    their spike rate (the rate the label was fitted to), not the rate over all training rows.
    """
    X = feature_matrix(train)
    recent = None
    if config.tau_window_s is not None and len(train):
        seconds = epoch_seconds(train["ts"])
        recent = seconds > seconds.max() - config.tau_window_s
    fitted = {}
    for kind in kinds:
        if kind == "stack":
            continue
        params = config.xgboost
        if kind == "xgboost" and xgb_rounds is not None:
            params = replace(params, n_estimators=xgb_rounds)
        estimator = make_estimator(kind, seed=config.seed, xgb=params).fit(X, y_train, eval_set)
        if recent is not None:
            estimator = PriorShift.to_rate(estimator, X[recent], float(np.mean(y_train[recent])))
        fitted[kind] = estimator
    return fitted


def _predict(fitted: dict, kinds: tuple[str, ...], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    X = feature_matrix(frame)
    scores = {kind: est.predict_proba(X) for kind, est in fitted.items()}
    if "stack" in kinds:
        scores["stack"] = np.mean([scores[m] for m in STACK_MEMBERS], axis=0)
    return scores


def _select(reports: dict[str, CandidateReport], candidates: tuple[str, ...], min_gain: float):
    """The best candidate by mean validation PR-AUC; a more complex one must beat it by min_gain."""
    pick, best = None, None
    for name in COMPLEXITY_ORDER:
        if name not in candidates:
            continue
        mean = reports[name].mean_pr_auc
        if mean is None:
            continue
        if best is None or mean > best + min_gain:
            pick, best = name, mean
    return pick


def _candidate_kinds(config: TrainConfig) -> tuple[str, ...]:
    unknown = set(config.candidates) - set(CANDIDATES)
    if unknown:
        raise TrainingError(f"unknown candidates {sorted(unknown)}; known: {CANDIDATES}")
    kinds = list(config.candidates)
    if "stack" in kinds:
        kinds = [k for k in kinds if k != "stack"] + [m for m in STACK_MEMBERS if m not in kinds]
        kinds.append("stack")
    return tuple(dict.fromkeys([*kinds, *BASELINES]))


def train(frame: pd.DataFrame, config: TrainConfig | None = None) -> TrainResult:
    """Walk-forward validation of every candidate and baseline, selection, final fit, test."""
    config = config or TrainConfig()
    timings: dict[str, float] = {}
    notes: list[str] = []
    started = time.perf_counter()

    base_spec = config.label_spec()
    missing = {"product_id", "ts", base_spec.fwd_column} - set(frame.columns)
    if missing:
        raise TrainingError(f"data set lacks columns {sorted(missing)}")
    frame = frame.sort_values(["ts", "product_id"], kind="stable").reset_index(drop=True)
    labelable = frame[frame[base_spec.fwd_column].notna()].reset_index(drop=True)
    if labelable.empty:
        raise TrainingError("no labelled rows: the recordings are too short for the horizon")
    try:
        plan: SplitPlan = walk_forward_splits(
            epoch_seconds(labelable["ts"]),
            n_folds=config.n_folds,
            test_fraction=config.test_fraction,
            embargo_s=config.embargo,
        )
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc

    kinds = _candidate_kinds(config)
    fold_metrics: dict[str, list[FoldResult]] = {k: [] for k in kinds}
    fold_thresholds: dict[str, list[float]] = {k: [] for k in kinds}
    xgb_rounds: list[int] = []
    fold_taus: list[float | None] = []
    for fold in plan.folds:
        train_rows = labelable.iloc[fold.train]
        spec = _fit_label(base_spec, train_rows, config.tau_window_s)
        fold_taus.append(spec.tau)
        train_part, y_train = spec.labelled(_subsample(train_rows, config.train_step_s))
        valid_part, y_valid = spec.labelled(labelable.iloc[fold.valid])
        if config.shuffle_labels:
            y_train = _shuffled(y_train, config.seed + fold.index)
        if is_degenerate(y_train):
            notes.append(f"fold {fold.index}: training part has no spike (or only spikes)")
        fitted = _fit_scorers(
            kinds, train_part, y_train, (feature_matrix(valid_part), y_valid), config
        )
        xgb = getattr(fitted.get("xgboost"), "base", fitted.get("xgboost"))
        if xgb is not None and xgb.early_stopped:
            xgb_rounds.append(xgb.best_rounds)
        scores = _predict(fitted, kinds, valid_part)
        for kind in kinds:
            metrics = {
                **ranking_metrics(y_valid, scores[kind]),
                **probability_metrics(y_valid, scores[kind]),
                "tau": spec.tau,
            }
            fold_metrics[kind].append(FoldResult(fold.index, metrics))
        if is_degenerate(y_valid):
            notes.append(
                f"fold {fold.index}: validation part ({len(y_valid)} rows) has "
                f"{int(y_valid.sum())} spikes: degenerate, excluded from means"
            )
        else:
            for kind in kinds:
                fold_thresholds[kind].append(
                    choose_threshold(y_valid, scores[kind], min_precision=config.min_precision)
                )
    timings["folds"] = time.perf_counter() - started

    reports = {
        kind: CandidateReport(
            kind,
            fold_metrics[kind],
            {m: summarize_folds(fold_metrics[kind], m) for m in ("pr_auc", "roc_auc", "brier")},
        )
        for kind in kinds
    }
    selected = _select(reports, config.candidates, config.min_gain)
    if selected is None:
        selected = "har_logistic" if "har_logistic" in config.candidates else config.candidates[0]
        notes.append(f"every validation fold is degenerate: fell back to {selected} unjudged")

    # the median of the folds' own thresholds: pooling the folds lets the most active one decide
    thresholds = {
        kind: float(np.median(fold_thresholds[kind])) if fold_thresholds[kind] else 0.5
        for kind in (selected, "zscore", "persistence")
    }

    # final fit on the development part, judged once on the test part
    t_final = time.perf_counter()
    dev_rows = labelable.iloc[plan.dev]
    final_spec = _fit_label(base_spec, dev_rows, config.tau_window_s)
    dev_part, y_dev = final_spec.labelled(_subsample(dev_rows, config.train_step_s))
    if is_degenerate(y_dev):
        raise TrainingError(
            f"the {len(y_dev)} training rows hold {int(y_dev.sum())} spikes under the label "
            f"{final_spec.to_dict()}: nothing to learn (try another label mode, k or quantile)"
        )
    if config.shuffle_labels:
        y_dev = _shuffled(y_dev, config.seed)
    rounds = int(np.median(xgb_rounds)) if xgb_rounds else None
    final_kinds = _candidate_kinds(replace(config, candidates=(selected,)))
    fitted = _fit_scorers(final_kinds, dev_part, y_dev, None, config, xgb_rounds=rounds)
    if selected == "stack":
        estimator = MeanStack([fitted[m] for m in STACK_MEMBERS])
    else:
        estimator = fitted[selected]
    timings["final_fit"] = time.perf_counter() - t_final

    test_part, y_test = final_spec.labelled(labelable.iloc[plan.test])
    label = final_spec.to_dict()
    span = {
        "train_start": pd.Timestamp(dev_rows["ts"].min()).isoformat(),
        "train_end": pd.Timestamp(dev_rows["ts"].max()).isoformat(),
        "test_start": pd.Timestamp(test_part["ts"].min()).isoformat() if len(test_part) else None,
        "test_end": pd.Timestamp(test_part["ts"].max()).isoformat() if len(test_part) else None,
    }
    common = {**span, "degraded": config.shuffle_labels}
    predictor = SpikePredictor(
        selected,
        estimator,
        label,
        thresholds[selected],
        info={**common, "xgb_rounds": rounds} if selected in ("xgboost", "stack") else common,
    )
    baseline = SpikePredictor("zscore", fitted["zscore"], label, thresholds["zscore"], info=common)
    persistence = SpikePredictor(
        "persistence", fitted["persistence"], label, thresholds["persistence"], info=common
    )

    test_scores = pd.DataFrame(
        {
            "ts": test_part["ts"].to_numpy(),
            "product_id": test_part["product_id"].to_numpy(),
            "y": y_test,
            "model": predictor.predict_proba(test_part),
            "zscore": baseline.predict_proba(test_part),
            "persistence": persistence.predict_proba(test_part),
        }
    )
    test_metrics = {
        "model": classifier_metrics(y_test, test_scores["model"], predictor.threshold),
        "zscore": classifier_metrics(y_test, test_scores["zscore"], baseline.threshold),
        "persistence": classifier_metrics(
            y_test, test_scores["persistence"], persistence.threshold
        ),
    }
    if test_metrics["model"]["degenerate"]:
        notes.append("the test part has no spike: test PR-AUC is undefined (None)")
    timings["total"] = time.perf_counter() - started

    split = plan.describe()
    split["fold_taus"] = fold_taus
    split.update(span)
    data = describe_data(frame)
    data["dev_positive_rate"] = float(np.mean(y_dev)) if len(y_dev) else None
    data["test_positive_rate"] = test_metrics["model"]["positive_rate"]
    data["train_rows_used"] = len(y_dev)
    for note in notes:
        log.warning(note)
    return TrainResult(
        predictor=predictor,
        baseline=baseline,
        selected=selected,
        reports=reports,
        test_metrics=test_metrics,
        label=label,
        split=split,
        data=data,
        timings=timings,
        config=config,
        test_scores=test_scores,
        notes=notes,
    )
