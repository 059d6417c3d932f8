"""The training pipeline: data -> labels -> evaluation -> selection -> final fit -> test.

Pure in the sense that matters here: a feature frame in, a :class:`TrainResult` out, no MLflow and
no files (``tasks.stages.train`` logs and registers the result).

The rows are split in time: the last ``test_fraction`` is the **test part**, touched once for the
reported figures (and left for ``validate``); the rest, behind an embargo, is the development
part. Every candidate and both baselines are judged on the development part three ways:

- **leave one day out** (:mod:`tasks.core.sessions`): train on the other UTC days (minus an
  embargo), tau fitted on them, judge on the held-out one; PR-AUC pooled over the days and within
  each, on the same rows for every scorer, with block-bootstrap intervals. This measures
  carry-over to a day (a market, a recorder) the model never saw, and it selects the model, for
  its worst day relative to persistence (:func:`select_for_worst_day`);
- **leave one session out**, the same over sessions, beside it (it selects when there are fewer
  than two days);
- **walk-forward folds** (:func:`tasks.core.evaluation.walk_forward_splits`), reported beside it,
  and the source of the operating threshold.

Honesty rules kept here:

- tau (the label threshold) fitted on each training part only (its most recent
  ``tau_window_s``); the final tau on the development part only;
- early stopping (XGBoost) and tuning (``C``, ``alpha``) on the embargoed tail of each training
  part, never on the rows that rank the candidates;
- persistence and the z-score are candidates too: a model is selected only if it does better
  than persistence on its worst held-out day (within ``min_gain``), else persistence is;
- missing inputs: training rows are duplicated with one input family blanked at a time, so a
  model learns to score from what remains; the missing-input report blanks each family in the
  held-out rows and compares with a model retrained without it (what those inputs allow);
- parts without a spike are flagged degenerate, counted and left out of means.
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
    average_precision,
    bootstrap_pr_auc,
    choose_threshold,
    classifier_metrics,
    embargo_for,
    epoch_seconds,
    is_degenerate,
    probability_metrics,
    ranking_metrics,
    summarize_folds,
    tail_split,
    time_blocks,
    walk_forward_splits,
)
from tasks.core.features import FEATURE_SET_VERSION
from tasks.core.labels import LabelSpec
from tasks.core.linear_models import ALPHA_GRID, C_GRID
from tasks.core.models import (
    BASELINES,
    BLEND_MEMBERS,
    CANDIDATES,
    INPUT_FAMILIES,
    OPTIONAL_CANDIDATES,
    STACK_MEMBERS,
    LogitBlend,
    MeanStack,
    PriorShift,
    SpikePredictor,
    XGBoostParams,
    feature_matrix,
    make_estimator,
    ranking_baselines,
)
from tasks.core.scorer import FitTarget, Scorer, feature_dtype
from tasks.core.sessions import (
    SESSION_GAP_S,
    SessionFold,
    SessionPart,
    judge_sessions,
    leave_one_day_out,
    leave_one_session_out,
    shortfalls,
    worst_gap,
)

log = logging.getLogger("cryptovol.training")

# Simpler first: a later candidate is chosen only if it beats the current pick by ``min_gain``.
COMPLEXITY_ORDER = (
    "har_vol",
    "har_logistic",
    "har_rv",
    "blend",
    "stack",
    "xgboost_monotone",
    "xgboost",
    "random_forest",
)
SIMPLEST_FIRST = ("persistence", "zscore", *COMPLEXITY_ORDER)  # the baselines are candidates too
TUNING = {
    "har_logistic": ("C", C_GRID),
    "har_rv": ("alpha", ALPHA_GRID),
    "har_vol": ("alpha", ALPHA_GRID),
}
BOOSTED = ("xgboost", "xgboost_monotone")  # stopped early on the tail, rounds kept per kind
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # of the model against persistence
# What the shuffled-labels drill registers: a classifier ranks by what it learned from the labels
# alone, where the HAR-RV models rank by the volatility level they are anchored on, whatever the
# labels (a HAR-RV fitted to shuffled labels still ranked like persistence).
DRILL_KIND = "har_logistic"
# classifiers learn the spike rate of their training rows; a regression's probability does not
PRIOR_SHIFTED = ("persistence", "zscore", "har_logistic", *BOOSTED, "random_forest")
# columns of the data set training never reads: left out of its load (a unique string per row
# in ``record_id`` costs more memory than all the features of the row)
UNUSED_COLUMNS = ("record_id", "tick_ts", "feature_set_version")


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
    session_gap_s: float = SESSION_GAP_S  # a pause this long starts a new session
    min_session_rows: int = 600  # a session is held out when it has this many labelled rows
    min_day_rows: int = 120  # a UTC day is held out when it has this many labelled rows
    # a held-out day's tau: from this many most recent seconds of the other days (None: all)
    day_tau_window_s: float | None = None
    min_session_spikes: int = 20  # a session's own ranking counts with this many spike rows...
    min_session_episodes: int = 3  # ...in this many separate bursts
    tail_fraction: float = 0.2  # of each training part: early stopping and tuning
    missing_fraction: float = 0.25  # rows duplicated with each input family blanked (0: none)
    missing_report: bool = True  # blank each input family in the held-out rows, report the drop
    bootstrap_samples: int = 200
    block_s: float = 300.0  # bootstrap block length

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
    """A scorer's walk-forward validation figures fold by fold and summarised."""

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
    reports: dict[str, CandidateReport]  # every candidate and baseline on the walk-forward folds
    sessions: dict  # leave-one-session-out: judge_sessions figures, missing inputs
    days: dict  # leave-one-day-out: judge_sessions figures by UTC day, what selects the model
    test_metrics: dict[str, dict]  # "model", "zscore", "persistence" on the same test rows
    test_interval: dict | None  # their 90 % block-bootstrap PR-AUC intervals
    label: dict  # the label spec fitted on the development part (tau included)
    split: dict
    data: dict
    timings: dict
    config: TrainConfig
    test_scores: pd.DataFrame  # y, model, zscore, persistence, ts, product_id of the test rows
    notes: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None  # the labelled rows in time order (development and test)

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
                "interval": self.test_interval,
            },
            "days": self.days,
            "sessions": self.sessions,
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


DESCRIBED = ("product_id", "ts", "fwd_vol_60", "source")  # what describe_data reads


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


def _rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[positions]``; a view, not a copy, when the positions are one run (a fold's
    training rows, the development and test parts are runs of the time-ordered rows)."""
    one_run = len(positions) > 0 and positions[-1] - positions[0] == len(positions) - 1
    if one_run and (np.diff(positions) == 1).all():
        return frame.iloc[positions[0] : positions[-1] + 1]
    return frame.iloc[positions]


def _on_grid(frame: pd.DataFrame, step_s: int) -> np.ndarray:
    """Which rows fall on the training grid of one row every ``step_s`` seconds."""
    if step_s <= 1:
        return np.ones(len(frame), dtype=bool)
    seconds = np.floor(epoch_seconds(frame["ts"])).astype(np.int64)
    return seconds % step_s == 0


def _fit_label(spec: LabelSpec, train_rows: pd.DataFrame, window_s: float | None) -> LabelSpec:
    """Tau from the most recent ``window_s`` of the training rows (all of them when None)."""
    if window_s is None:
        return spec.fit(train_rows)
    seconds = epoch_seconds(train_rows["ts"])
    return spec.fit(train_rows[seconds > seconds.max() - window_s])


def _missing_picks(rows: int, fraction: float, seed: int) -> list[np.ndarray]:
    """For each input family in turn, which of ``rows`` get a copy with that family blanked."""
    rng = np.random.default_rng(seed)
    return [rng.random(rows) < fraction for _ in INPUT_FAMILIES]


def with_missing_inputs(
    rows: pd.DataFrame, y: np.ndarray, fraction: float, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """``rows`` plus, for each input family, a random ``fraction`` of them with that family
    blanked (NaN): a model trained on these learns to score from the inputs that remain."""
    if fraction <= 0 or len(rows) == 0:
        return rows, y
    picks = _missing_picks(len(rows), fraction, seed)
    parts, labels = [rows], [y]
    for columns, pick in zip(INPUT_FAMILIES.values(), picks, strict=True):
        blank = rows[pick].copy()
        blank[[c for c in columns if c in blank]] = np.nan
        parts.append(blank)
        labels.append(y[pick])
    return pd.concat(parts, ignore_index=True), np.concatenate(labels)


@dataclass
class Design:
    """Rows as the estimators take them: the feature matrix (one block, in the features' own
    precision: float32 as training loads them, which every estimator reads exactly), the labels
    and what a regression learns. Built once per training part and shared by every kind and
    every value tried, instead of once per fit."""

    X: pd.DataFrame
    y: np.ndarray
    target: FitTarget

    @classmethod
    def of(
        cls, rows: pd.DataFrame, y: np.ndarray, spec: LabelSpec, fraction: float, seed: int
    ) -> Design:
        """``rows`` with the copies of :func:`with_missing_inputs` (the same picks), written
        straight into one array rather than concatenated frames."""
        values = spec.target_values(rows)
        dtype = feature_dtype(rows)
        features = feature_matrix(rows, dtype=dtype)
        names = features.columns
        blanked = fraction > 0 and len(rows) > 0
        picks = _missing_picks(len(rows), fraction, seed) if blanked else []
        families = list(INPUT_FAMILIES.values()) if blanked else []
        total = len(rows) + sum(int(pick.sum()) for pick in picks)
        matrix = np.empty((total, len(names)), dtype=dtype)
        matrix[: len(rows)] = features.to_numpy(dtype)
        del features
        ys, targets, at = [y], [values], len(rows)
        for columns, pick in zip(families, picks, strict=True):
            block = matrix[at : at + int(pick.sum())]
            np.compress(pick, matrix[: len(rows)], axis=0, out=block)
            block[:, names.get_indexer([c for c in columns if c in names])] = np.nan
            ys.append(y[pick])
            targets.append(values[pick])
            at += len(block)
        X = pd.DataFrame(matrix, columns=names, copy=False)
        relative = spec.mode == "relative"
        target = FitTarget(np.concatenate(targets), spec.threshold_value, relative=relative)
        return cls(X, np.concatenate(ys), target)


@dataclass
class FittedPart:
    """What one training part produced: the label it was fitted to and a scorer per kind."""

    spec: LabelSpec
    scorers: dict[str, Scorer]
    chosen: dict[str, float]  # tuned hyper-parameters
    rounds: dict[str, int]  # boosting rounds per boosted kind


def _fit_kind(
    kind: str,
    config: TrainConfig,
    rows: pd.DataFrame,
    y: np.ndarray,
    spec: LabelSpec,
    hyper: dict,
    eval_set=None,
    designs: dict[bool, Design] | None = None,
) -> Scorer:
    """``kind`` fitted on ``rows``: the baselines as they are, the models on the rows with input
    families blanked too. ``designs`` keeps the :class:`Design` of ``rows`` (plain or with
    blanks) for the next kind fitted on the same rows."""
    params = config.xgboost
    if kind in BOOSTED and "rounds" in hyper:
        params = replace(params, n_estimators=int(hyper["rounds"]))
    extra = {k: v for k, v in hyper.items() if k != "rounds"}
    estimator = make_estimator(kind, seed=config.seed, xgb=params, **extra)
    augment = kind not in BASELINES
    designs = {} if designs is None else designs
    if augment not in designs:
        designs.clear()  # the models come before the baselines: one design held at a time
        fraction = config.missing_fraction if augment else 0.0
        designs[augment] = Design.of(rows, y, spec, fraction, config.seed)
    design = designs[augment]
    return estimator.fit(design.X, design.y, eval_set, design.target)


def fit_training_part(
    train_rows: pd.DataFrame,
    kinds: tuple[str, ...],
    config: TrainConfig,
    *,
    spec: LabelSpec | None = None,
    hyper: dict[str, dict] | None = None,
    shuffle_seed: int | None = None,
) -> FittedPart:
    """Every kind fitted on one training part: label fitted there, rows sub-sampled, tuning and
    early stopping on the part's embargoed tail, classifiers prior-shifted to the spike rate
    of the part's most recent ``tau_window_s`` (the rows tau was fitted on).

    ``hyper`` fixes hyper-parameters instead of tuning them (``{"xgboost": {"rounds": n}}``...).
    """
    base_spec = config.label_spec()
    spec = spec or _fit_label(base_spec, train_rows, config.tau_window_s)
    # the labelled rows on the training grid, copied once (spec.labelled's rule, by row)
    labels = spec.apply(train_rows).to_numpy(dtype=np.float64)
    keep = ~np.isnan(labels) & _on_grid(train_rows, config.train_step_s)
    part, y = train_rows[keep], labels[keep]
    del labels, keep
    if shuffle_seed is not None:  # labels and the volatility they threshold, moved together
        order = np.random.default_rng(shuffle_seed).permutation(len(y))
        part, y = part.copy(), y[order]
        targets = [c for c in (spec.fwd_column, spec.trail_column) if c in part]
        part[targets] = part[targets].to_numpy()[order]
    times = epoch_seconds(part["ts"])
    fit_at, tail_at = tail_split(times, fraction=config.tail_fraction, embargo_s=config.embargo)
    fit_rows, y_fit = _rows(part, fit_at), y[fit_at]
    tail_rows, y_tail = _rows(part, tail_at), y[tail_at]
    tunable = len(y_tail) > 0 and not is_degenerate(y_tail) and not is_degenerate(y_fit)
    recent = None
    if config.tau_window_s is not None and len(part):
        recent = times > times.max() - config.tau_window_s
    hyper = dict(hyper or {})
    scorers: dict[str, Scorer] = {}
    chosen: dict[str, float] = {}
    rounds: dict[str, int] = {}
    fitted_kinds = [kind for kind in kinds if kind not in ("stack", "blend")]
    fixed_for = {kind: dict(hyper.get(kind, {})) for kind in fitted_kinds}
    # first every fit on the fit rows (tuning, early stopping), then the fits on the whole part:
    # the design matrices of the two are never held at once
    designs: dict[bool, Design] = {}
    stopped_early: dict[str, Scorer] = {}
    for kind in fitted_kinds:
        fixed = fixed_for[kind]
        if kind in TUNING and not fixed and tunable:
            name, grid = TUNING[kind]
            tried = {}
            for value in grid:
                trial = _fit_kind(kind, config, fit_rows, y_fit, spec, {name: value}, None, designs)
                tried[value] = average_precision(y_tail, trial.predict_proba(tail_rows))
            fixed[name] = max(tried, key=tried.get)
        if kind in BOOSTED and "rounds" not in fixed and tunable:
            tail = (feature_matrix(tail_rows), y_tail)
            stopped_early[kind] = _fit_kind(
                kind, config, fit_rows, y_fit, spec, fixed, eval_set=tail, designs=designs
            )
    designs.clear()
    for kind in fitted_kinds:
        fixed = fixed_for[kind]
        estimator = stopped_early.get(kind)
        if estimator is None:
            estimator = _fit_kind(kind, config, part, y, spec, fixed, designs=designs)
        if kind in BOOSTED:
            rounds[kind] = estimator.best_rounds
        chosen.update({f"{kind}.{k}": float(v) for k, v in fixed.items()})
        if kind in PRIOR_SHIFTED and recent is not None:
            X_recent = feature_matrix(part[recent])
            estimator = PriorShift.to_rate(estimator, X_recent, float(np.mean(y[recent])))
        scorers[kind] = estimator
    del designs, part, fit_rows, tail_rows  # not held through the blend's inner fits
    if "stack" in kinds:
        scorers["stack"] = MeanStack([scorers[m] for m in STACK_MEMBERS])
    if "blend" in kinds:
        model, persistence = (scorers[m] for m in BLEND_MEMBERS)
        weight = _blend_weight(train_rows, config, spec, chosen, persistence)
        chosen["blend.weight"] = weight
        scorers["blend"] = LogitBlend(model, persistence, weight)
    return FittedPart(spec, scorers, chosen, rounds)


def _blend_weight(
    train_rows: pd.DataFrame,
    config: TrainConfig,
    spec: LabelSpec,
    chosen: dict[str, float],
    persistence: Scorer,
) -> float:
    """The blend's weight of the model against persistence, learned on held-out days of the
    training rows: each day left out in turn, the model fitted on the others (with the part's
    label and hyper-parameters; persistence is the part's own, a fixed feature with a monotone
    calibration), every weight of :data:`BLEND_WEIGHTS` judged on the held-out days like the
    candidates (worst day relative to persistence, then pooled; the weight nearer persistence
    on a tie). Sessions stand in for days when there are fewer than two; without either, an
    even blend."""
    times = epoch_seconds(train_rows["ts"])
    folds = leave_one_day_out(
        times, gap_s=config.session_gap_s, embargo_s=config.embargo, min_rows=config.min_day_rows
    ) or leave_one_session_out(
        times,
        gap_s=config.session_gap_s,
        embargo_s=config.embargo,
        min_rows=config.min_session_rows,
    )
    if not folds:
        return 0.5
    kind = BLEND_MEMBERS[0]
    hyper = {kind: {k.split(".")[1]: v for k, v in chosen.items() if k.startswith(f"{kind}.")}}
    labels = spec.apply(train_rows).to_numpy(dtype=np.float64)
    on_grid = _on_grid(train_rows, config.train_step_s)
    parts = []
    for fold in folds:
        inner_labels = labels[fold.train]
        rows, y = spec.labelled(train_rows.iloc[fold.test])
        if is_degenerate(inner_labels[~np.isnan(inner_labels)]) or len(y) == 0:
            continue  # nothing to learn from (a relative label needs 450 s of history), or judge
        # only the rows fit_training_part keeps of them: those on the training grid
        inner_rows = train_rows.iloc[fold.train[on_grid[fold.train]]]
        inner = fit_training_part(inner_rows, (kind,), config, spec=spec, hyper=hyper)
        X = feature_matrix(rows).to_numpy()
        model = inner.scorers[kind]
        scores = {str(w): LogitBlend(model, persistence, w).predict_array(X) for w in BLEND_WEIGHTS}
        scores["persistence"] = scores[str(0.0)]
        parts.append(SessionPart(fold.session, y, epoch_seconds(rows["ts"]), scores, spec.tau))
    if not parts:
        return 0.5
    judged = judge_sessions(
        parts,
        min_spikes=config.min_session_spikes,
        min_episodes=config.min_session_episodes,
        n_boot=0,
    )
    if judged["pooled"]["degenerate"]:
        return 0.5
    best = None
    for w in BLEND_WEIGHTS:
        key = (worst_gap(judged, str(w)), judged["pooled"]["pr_auc"][str(w)])
        if (
            best is None
            or key[0] > best[1][0] + config.min_gain
            or (key[0] >= best[1][0] - config.min_gain and key[1] > best[1][1] + config.min_gain)
        ):
            best = (w, key)
    return float(best[0])


def _scores(fitted: FittedPart, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    X = feature_matrix(rows).to_numpy()
    return {kind: scorer.predict_array(X) for kind, scorer in fitted.scorers.items()}


def _candidate_kinds(config: TrainConfig) -> tuple[str, ...]:
    known = (*CANDIDATES, *OPTIONAL_CANDIDATES)
    unknown = set(config.candidates) - set(known)
    if unknown:
        raise TrainingError(f"unknown candidates {sorted(unknown)}; known: {known}")
    kinds = list(config.candidates)
    for combined, members in (("stack", STACK_MEMBERS), ("blend", BLEND_MEMBERS)):
        if combined in kinds:
            kinds = [k for k in kinds if k != combined] + [m for m in members if m not in kinds]
            kinds.append(combined)
    return tuple(dict.fromkeys([*kinds, *BASELINES]))


def select_candidate(
    judged: dict, candidates: tuple[str, ...], min_gain: float
) -> tuple[str, dict]:
    """The selected kind by leave-one-session-out PR-AUC, and why.

    Eligible: a candidate that ranks at least as well as both baselines (persistence and the
    z-score) pooled and within every held-out session with enough spikes
    (:func:`tasks.core.sessions.shortfalls`). Among those, the best pooled PR-AUC, but a more
    complex candidate must beat the current pick by ``min_gain``. With none eligible, the
    better baseline itself.
    """
    pooled = judged["pooled"]["pr_auc"]
    below = {name: shortfalls(judged, name) for name in candidates}
    pick, best = None, None
    for name in COMPLEXITY_ORDER:
        if name not in candidates or below[name] or pooled.get(name) is None:
            continue
        if best is None or pooled[name] > best + min_gain:
            pick, best = name, pooled[name]
    why = {
        "rule": "best pooled leave-one-session-out PR-AUC among candidates never below a "
        "baseline (pooled and in sessions with enough spikes); simpler first by min_gain",
        "below_baselines": {k: v for k, v in below.items() if v},
    }
    if pick is None:
        pick = max(BASELINES, key=lambda name: pooled[name])
    return pick, why


def select_for_worst_day(
    judged: dict, candidates: tuple[str, ...], min_gain: float
) -> tuple[str, dict]:
    """The selected kind by leave-one-day-out PR-AUC, and why.

    Every candidate and both baselines are ranked by their worst held-out day relative to
    persistence (:func:`tasks.core.sessions.worst_gap`: days with enough spikes, or pooled when
    none has), then by the pooled PR-AUC. Simpler first (:data:`SIMPLEST_FIRST`): a more complex
    one replaces the pick when its worst day is better by more than ``min_gain``, or within
    ``min_gain`` of it and its pooled figure better by more than ``min_gain``.
    """
    pooled = judged["pooled"]["pr_auc"]
    ranked = {}
    for name in SIMPLEST_FIRST:
        if (name in candidates or name in BASELINES) and pooled.get(name) is not None:
            ranked[name] = (worst_gap(judged, name), pooled[name])
    pick = None
    for name, (worst, pooled_pr) in ranked.items():
        if pick is None:
            pick = name
            continue
        best_worst, best_pooled = ranked[pick]
        if worst > best_worst + min_gain or (
            worst >= best_worst - min_gain and pooled_pr > best_pooled + min_gain
        ):
            pick = name
    why = {
        "rule": "ranked by the worst held-out day's PR-AUC minus persistence's (days with "
        "enough spikes), then by pooled PR-AUC; simpler first, by min_gain",
        "worst_day_gap": {name: worst for name, (worst, _) in ranked.items()},
    }
    return pick, why


def _leave_out(
    folds: list[SessionFold],
    dev: pd.DataFrame,
    kinds: tuple[str, ...],
    config: TrainConfig,
    shuffle_offset: int,
) -> tuple[dict, dict | None]:
    """Every kind trained without each held-out group (a day or a session) and judged on it,
    beside the baselines: the report (with the fitted parts under ``fitted``) and the judged
    figures (None without folds, or when no held-out row is a spike)."""
    report: dict = {"folds": [f.describe() for f in folds]}
    fitted = []
    for i, fold in enumerate(folds):
        shuffle = config.seed + shuffle_offset + i if config.shuffle_labels else None
        fitted.append(fit_training_part(dev.iloc[fold.train], kinds, config, shuffle_seed=shuffle))
    report["fitted"] = fitted
    if not folds:
        return report, None
    judged = judge_sessions(
        _session_parts(folds, dev, fitted),
        min_spikes=config.min_session_spikes,
        min_episodes=config.min_session_episodes,
        block_s=config.block_s,
        n_boot=config.bootstrap_samples,
        seed=config.seed,
    )
    report.update(judged)
    if judged["pooled"]["degenerate"]:
        return report, None
    return report, judged


def _select_on_folds(reports: dict[str, CandidateReport], config: TrainConfig) -> str | None:
    """Fallback with a single session: the best mean walk-forward PR-AUC, not below either
    baseline's mean."""
    means = [reports[b].mean_pr_auc for b in BASELINES if reports[b].mean_pr_auc is not None]
    floor = max(means) if means else None
    pick, best = None, None
    for name in COMPLEXITY_ORDER:
        if name not in config.candidates:
            continue
        mean = reports[name].mean_pr_auc
        if mean is None or (floor is not None and mean < floor):
            continue
        if best is None or mean > best + config.min_gain:
            pick, best = name, mean
    return pick


def _session_parts(
    folds: list[SessionFold],
    dev: pd.DataFrame,
    fitted: list[FittedPart],
    blank: tuple[str, ...] = (),
) -> list[SessionPart]:
    """Every fold's held-out session scored by its fold's scorers, beside the raw baselines."""
    parts = []
    for fold, part in zip(folds, fitted, strict=True):
        rows, y = part.spec.labelled(dev.iloc[fold.test])
        if blank:
            rows = rows.copy()
            rows[[c for c in blank if c in rows]] = np.nan
        scores = {k: v for k, v in _scores(part, rows).items() if k not in BASELINES}
        scores.update(ranking_baselines(rows))
        parts.append(SessionPart(fold.session, y, epoch_seconds(rows["ts"]), scores, part.spec.tau))
    return parts


def _missing_input_report(
    folds: list[SessionFold],
    dev: pd.DataFrame,
    fitted: list[FittedPart],
    selected: str,
    config: TrainConfig,
) -> dict:
    """Each input family blanked in the held-out rows: pooled PR-AUC of the selected model and
    both baselines, the drop from intact rows, and a model of the same kind retrained without the
    family (what the remaining inputs allow)."""
    intact = judge_sessions(_session_parts(folds, dev, fitted), n_boot=0)["pooled"]["pr_auc"]
    # the selected kind and what it is made of (the blend's persistence is a baseline)
    needed = _candidate_kinds(replace(config, candidates=(selected,)))
    members = {"blend": BLEND_MEMBERS, "stack": STACK_MEMBERS}.get(selected, ())
    kinds = tuple(k for k in needed if k not in BASELINES or k in members)
    report = {"intact": {k: intact[k] for k in (selected, "persistence", "zscore")}}
    # a fit keeps only its rows on the training grid: the others are not copied, but for the
    # blend, whose weight is judged on every row
    on_grid = None if "blend" in kinds else _on_grid(dev, config.train_step_s)
    for family, columns in INPUT_FAMILIES.items():
        blanked = judge_sessions(_session_parts(folds, dev, fitted, columns), n_boot=0)
        pr = blanked["pooled"]["pr_auc"]
        retrained = []
        for fold, part in zip(folds, fitted, strict=True):
            kept = fold.train if on_grid is None else fold.train[on_grid[fold.train]]
            train_rows = dev.take(kept)  # a copy of its own, blanked below
            train_rows[[c for c in columns if c in train_rows]] = np.nan
            hyper = {}
            for key, value in part.chosen.items():
                kind, name = key.split(".")
                hyper.setdefault(kind, {})[name] = value
            for kind, n in part.rounds.items():
                hyper.setdefault(kind, {})["rounds"] = n
            refit = fit_training_part(train_rows, kinds, config, spec=part.spec, hyper=hyper)
            retrained.append(refit)
        without = judge_sessions(_session_parts(folds, dev, retrained, columns), n_boot=0)
        report[family] = {
            "columns": list(columns),
            "pr_auc": {k: pr[k] for k in (selected, "persistence", "zscore")},
            "drop": {k: pr[k] - intact[k] for k in (selected, "persistence", "zscore")},
            "retrained_without": without["pooled"]["pr_auc"][selected],
        }
    return report


def train(frame: pd.DataFrame, config: TrainConfig | None = None) -> TrainResult:
    """Leave-one-session-out and walk-forward evaluation of every candidate and baseline,
    selection, final fit, test.

    ``frame`` is not kept: its labelled rows are copied once, in time order (``rows`` of the
    result), so a caller that holds no other reference to it frees it for the training."""
    config = config or TrainConfig()
    if config.shuffle_labels:
        config = replace(config, candidates=(DRILL_KIND,))
    timings: dict[str, float] = {}
    notes: list[str] = []
    started = time.perf_counter()

    base_spec = config.label_spec()
    missing = {"product_id", "ts", base_spec.fwd_column} - set(frame.columns)
    if missing:
        raise TrainingError(f"data set lacks columns {sorted(missing)}")
    # one copy of the rows: the labelled ones in time order (described first, on a few columns)
    keys = frame[["ts", "product_id"]].reset_index(drop=True)
    order = keys.sort_values(["ts", "product_id"], kind="stable").index.to_numpy()
    del keys
    data = describe_data(frame[[c for c in DESCRIBED if c in frame]].take(order))
    labelled = order[frame[base_spec.fwd_column].notna().to_numpy()[order]]
    labelable = frame.take(labelled)
    labelable.index = pd.RangeIndex(len(labelable))
    del order, labelled, frame  # the caller may hand the frame over (train_and_register does)
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
    dev = _rows(labelable, plan.dev)  # the first rows: a view, indexed from 0

    # ---- walk-forward folds: reported, and the operating threshold
    fold_metrics: dict[str, list[FoldResult]] = {k: [] for k in kinds}
    fold_thresholds: dict[str, list[float]] = {k: [] for k in kinds}
    boosted_rounds: dict[str, list[int]] = {}
    fold_taus: list[float | None] = []
    for fold in plan.folds:
        shuffle = config.seed + fold.index if config.shuffle_labels else None
        train_rows = _rows(labelable, fold.train)
        fitted = fit_training_part(train_rows, kinds, config, shuffle_seed=shuffle)
        fold_taus.append(fitted.spec.tau)
        for kind, n in fitted.rounds.items():
            boosted_rounds.setdefault(kind, []).append(n)
        valid_part, y_valid = fitted.spec.labelled(_rows(labelable, fold.valid))
        scores = _scores(fitted, valid_part)
        for kind in kinds:
            metrics = {
                **ranking_metrics(y_valid, scores[kind]),
                **probability_metrics(y_valid, scores[kind]),
                "tau": fitted.spec.tau,
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
    reports = {
        kind: CandidateReport(
            kind,
            fold_metrics[kind],
            {m: summarize_folds(fold_metrics[kind], m) for m in ("pr_auc", "roc_auc", "brier")},
        )
        for kind in kinds
    }
    timings["folds"] = time.perf_counter() - started

    # ---- leave one day out (what selects the model), and one session out beside it
    t_sessions = time.perf_counter()
    dev_times = epoch_seconds(dev["ts"])
    day_folds = leave_one_day_out(
        dev_times,
        gap_s=config.session_gap_s,
        embargo_s=config.embargo,
        min_rows=config.min_day_rows,
    )
    day_config = replace(config, tau_window_s=config.day_tau_window_s)
    days, day_judged = _leave_out(day_folds, dev, kinds, day_config, shuffle_offset=200)
    session_folds = leave_one_session_out(
        dev_times,
        gap_s=config.session_gap_s,
        embargo_s=config.embargo,
        min_rows=config.min_session_rows,
    )
    sessions, session_judged = _leave_out(session_folds, dev, kinds, config, shuffle_offset=100)
    session_fitted = sessions.pop("fitted")
    days.pop("fitted")
    for what, folds, judged in (
        ("day", day_folds, day_judged),
        ("session", session_folds, session_judged),
    ):
        if folds and judged is None:
            notes.append(f"no held-out {what} holds a spike: carry-over is not judged on {what}s")
    selected = None
    if config.shuffle_labels:  # the drill: a degraded candidate, whatever the figures say
        selected = DRILL_KIND
        notes.append(f"labels shuffled: {selected} is registered degraded, unselected")
    elif day_judged is not None:
        selected, why = select_for_worst_day(day_judged, config.candidates, config.min_gain)
        days["selection"] = why
        if selected in BASELINES:
            notes.append(
                f"no candidate does better than the {selected} baseline on its worst held-out "
                f"day: the {selected} baseline is the selected model"
            )
    elif session_judged is not None:
        notes.append("fewer than two days to leave out: selected on held-out sessions")
        selected, why = select_candidate(session_judged, config.candidates, config.min_gain)
        sessions["selection"] = why
        if selected in BASELINES:
            notes.append(
                "no candidate ranks at least as well as both baselines on held-out "
                f"sessions: the {selected} baseline is the selected model"
            )
    else:
        notes.append(
            "fewer than two sessions (and two days) with enough rows and spikes: carry-over "
            "to unseen data is not measured; selected on walk-forward folds"
        )
    if selected is None:
        selected = _select_on_folds(reports, config)
        if selected is None:
            selected = max(BASELINES, key=lambda b: reports[b].mean_pr_auc or 0.0)
            notes.append(
                f"no candidate reaches the baselines on the walk-forward folds: {selected}"
            )
    sessions["selected"] = days["selected"] = selected
    timings["sessions"] = time.perf_counter() - t_sessions

    if config.missing_report and session_folds and selected not in BASELINES:
        t_missing = time.perf_counter()
        sessions["missing_inputs"] = _missing_input_report(
            session_folds, dev, session_fitted, selected, config
        )
        timings["missing_inputs"] = time.perf_counter() - t_missing

    # the median of the folds' own thresholds: pooling the folds lets the most active one decide
    thresholds = {
        kind: float(np.median(fold_thresholds[kind])) if fold_thresholds[kind] else 0.5
        for kind in (selected, "zscore", "persistence")
    }

    # ---- final fit on the development part, judged once on the test part
    t_final = time.perf_counter()
    final_kinds = _candidate_kinds(replace(config, candidates=()))
    if selected not in BASELINES:
        final_kinds = _candidate_kinds(replace(config, candidates=(selected,)))
    hyper = {}
    for kind, values in boosted_rounds.items():
        if kind in final_kinds:
            hyper[kind] = {"rounds": int(np.median(values))}
    final = fit_training_part(
        dev,
        final_kinds,
        config,
        hyper=hyper,
        shuffle_seed=config.seed if config.shuffle_labels else None,
    )
    final_spec = final.spec
    dev_labels = final_spec.apply(dev).to_numpy(dtype=np.float64)
    dev_labels = dev_labels[_on_grid(dev, config.train_step_s)]
    y_dev = dev_labels[~np.isnan(dev_labels)]  # the final fit's labels, without copying its rows
    if is_degenerate(y_dev):
        raise TrainingError(
            f"the {len(y_dev)} training rows hold {int(y_dev.sum())} spikes under the label "
            f"{final_spec.to_dict()}: nothing to learn (try another label mode, k or quantile)"
        )
    timings["final_fit"] = time.perf_counter() - t_final

    test_part, y_test = final_spec.labelled(_rows(labelable, plan.test))
    label = final_spec.to_dict()
    span = {
        "train_start": pd.Timestamp(dev["ts"].min()).isoformat(),
        "train_end": pd.Timestamp(dev["ts"].max()).isoformat(),
        "test_start": pd.Timestamp(test_part["ts"].min()).isoformat() if len(test_part) else None,
        "test_end": pd.Timestamp(test_part["ts"].max()).isoformat() if len(test_part) else None,
    }
    common = {**span, "degraded": config.shuffle_labels}
    info = dict(common)
    if selected in hyper:
        info["xgb_rounds"] = hyper[selected]["rounds"]
    info.update(final.chosen)
    predictor = SpikePredictor(
        selected, final.scorers[selected], label, thresholds[selected], info=info
    )
    baseline = SpikePredictor(
        "zscore", final.scorers["zscore"], label, thresholds["zscore"], info=common
    )
    persistence = SpikePredictor(
        "persistence", final.scorers["persistence"], label, thresholds["persistence"], info=common
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
    test_interval = None
    if test_metrics["model"]["degenerate"]:
        notes.append("the test part has no spike: test PR-AUC is undefined (None)")
    elif config.bootstrap_samples:
        times = epoch_seconds(test_scores["ts"])
        boot = bootstrap_pr_auc(
            y_test,
            {n: test_scores[n].to_numpy() for n in ("model", "persistence", "zscore")},
            time_blocks(times, np.zeros(len(times)), config.block_s),
            references=("persistence", "zscore"),
            n_boot=config.bootstrap_samples,
            seed=config.seed,
        )
        test_interval = {k: v.to_list() for k, v in boot["pr_auc"].items()}
    timings["total"] = time.perf_counter() - started

    split = plan.describe()
    split["fold_taus"] = fold_taus
    split.update(span)
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
        sessions=sessions,
        days=days,
        test_metrics=test_metrics,
        test_interval=test_interval,
        label=label,
        split=split,
        data=data,
        timings=timings,
        config=config,
        test_scores=test_scores,
        notes=notes,
        rows=labelable,
    )
