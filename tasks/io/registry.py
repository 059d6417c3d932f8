"""MLflow I/O: training runs, models as pyfunc, the registry, aliases, promotion and rollback.

Two registered models, versioned alike:

- ``volatility-spike`` (``Settings.registered_model``): the selected candidate;
- ``volatility-spike-baseline``: the z-score baseline fit in the same run, the served fallback
  (``MODEL_VARIANT=baseline``). Its ``champion`` alias follows the ML champion: promoting or
  rolling back version N of the model moves the baseline's ``champion`` to the baseline version
  trained beside N (tag ``baseline_version``).

Aliases ``challenger`` (set by training) and ``champion`` (served, set by promotion). Promotion and
rollback record who, when and why as tags on the versions, and keep a champion history as a tag
on the registered model, so a rollback restores the previous champion even when the alias was
last moved by hand in the MLflow UI (the history's top then differs from the alias, and the
rollback returns to the history's top).

Version numbers are ``int`` on SQLite and ``str`` over REST: every function here returns ``str``.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from tasks.core.models import SpikePredictor, feature_matrix
from tasks.io import plots
from tasks.settings import Settings

log = logging.getLogger("cryptovol.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
VARIANTS = ("ml", "baseline")
HISTORY_TAG = "champion_history"
HISTORY_KEEP = 20
PASS_TAG = "validation.decision"
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "xgboost", "cloudpickle")


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (no challenger, no gate decision...)."""


# ------------------------------------------------------------------------------------- setup


def model_name(settings: Settings, variant: str = "ml") -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return settings.registered_model if variant == "ml" else f"{settings.registered_model}-baseline"


def model_uri(settings: Settings, variant: str = "ml", alias: str = CHAMPION) -> str:
    """``models:/<name>@<alias>``: what serving loads (``MODEL_VARIANT`` picks the variant)."""
    return f"models:/{model_name(settings, variant)}@{alias}"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' store (creating a local SQLite store's directory)."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(settings: Settings, client: MlflowClient) -> str:
    """The project's experiment; with a SQLite store, artifacts go to ``mlartifacts`` beside it."""
    name = settings.registered_model
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def git_sha(cwd: Path | None = None) -> str:
    """The project's commit, ``+dirty`` when tracked files differ; ``unknown`` outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _requirements() -> list[str]:
    pins = []
    for dist in _REQUIREMENTS:
        try:
            pins.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


# ------------------------------------------------------------------------------ pyfunc model


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


def _log_model(name: str, predictor: SpikePredictor, example: pd.DataFrame):
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


# ------------------------------------------------------------------------------ training run


@dataclass(frozen=True)
class TrainingRecord:
    run_id: str
    version: str
    baseline_version: str
    model_uri: str
    summary: dict

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "baseline_version": self.baseline_version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "metrics": self.summary["test"],
            "selected": self.summary["selected"],
            "summary": self.summary,
        }


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def _numeric(metrics: dict, prefix: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, int | float) and np.isfinite(value):  # bools count as 0/1
            out[f"{prefix}{key}"] = float(value)
    return out


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _training_report(result, version: str) -> str:
    s = result.summary()
    t = s["test"]
    lines = [
        f"# Training run: {result.selected} (version {version})",
        "",
        f"Data: {s['data']['rows']} rows, {s['data']['start']} to {s['data']['end']}, "
        f"fingerprint {s['data']['fingerprint']}, feature set {s['data']['feature_set_version']}.",
        f"Label: {s['label']}.",
        f"Test part (the most recent {result.config.test_fraction:.0%}, embargo "
        f"{result.config.embargo:.0f} s): {t['rows']} rows, spike rate {_f(t['positive_rate'])}.",
        "",
        "| scorer | test PR-AUC | test ROC-AUC | brier |",
        "| --- | --- | --- | --- |",
    ]
    for name, metrics in result.test_metrics.items():
        lines.append(
            f"| {name} | {_f(metrics['pr_auc'])} | {_f(metrics['roc_auc'])} | "
            f"{_f(metrics['brier'])} |"
        )
    lines += ["", "| candidate | mean val PR-AUC | std | folds | degenerate folds |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for name, v in s["validation"].items():
        folds = ", ".join("n/a" if x is None else f"{x:.3f}" for x in v["pr_auc_folds"])
        mean, std, degenerate = _f(v["pr_auc_mean"]), _f(v["pr_auc_std"]), v["degenerate_folds"]
        lines.append(f"| {name} | {mean} | {std} | {folds} | {degenerate} |")
    if s["notes"]:
        lines += ["", "Notes:", *[f"- {n}" for n in s["notes"]]]
    return "\n".join(lines) + "\n"


def _log_figures(result) -> None:
    import matplotlib.pyplot as plt

    scores = result.test_scores
    y = scores["y"].to_numpy()
    figures = {
        "plots/pr_curve.png": plots.pr_curves(
            y,
            {n: scores[n].to_numpy() for n in ("model", "zscore", "persistence")},
            title="Test part: precision-recall",
        ),
        "plots/calibration.png": plots.calibration_curve(y, scores["model"].to_numpy()),
        "plots/feature_importance.png": plots.feature_importance(
            result.predictor.estimator.importance(), title=f"{result.selected}: importance"
        ),
        "plots/score_distribution.png": plots.score_distribution(
            y, scores["model"].to_numpy(), result.threshold
        ),
    }
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def log_training(
    settings: Settings,
    result,
    *,
    example: pd.DataFrame,
    data_paths: list[str] | None = None,
    alias: str | None = CHALLENGER,
) -> TrainingRecord:
    """Log a :class:`tasks.core.training.TrainResult` as a run, register both models, set ``alias``.

    ``example`` is a frame of feature rows for the input example (e.g. a few training rows).
    """
    client = connect(settings)
    experiment = experiment_id(settings, client)
    summary = result.summary()
    sha = git_sha()
    predictor, baseline = result.predictor, result.baseline
    label = result.label
    with mlflow.start_run(experiment_id=experiment, run_name=f"train-{result.selected}") as run:
        mlflow.set_tags(
            {
                "stage": "train",
                "model_kind": result.selected,
                "feature_set_version": predictor.feature_set_version,
                "git_sha": sha,
                "degraded": str(result.config.shuffle_labels).lower(),
                "data_fingerprint": result.data["fingerprint"],
            }
        )
        params: dict[str, Any] = {}
        _flatten(
            "config", {k: v for k, v in result.config.to_dict().items() if k != "xgboost"}, params
        )
        _flatten("xgboost", result.config.to_dict()["xgboost"], params)
        _flatten("label", label, params)
        params.update(
            {
                "selected": result.selected,
                "threshold": predictor.threshold,
                "baseline_threshold": baseline.threshold,
                "feature_set_version": predictor.feature_set_version,
                "n_features": len(predictor.feature_names),
                "data.fingerprint": result.data["fingerprint"],
                "data.start": result.data["start"],
                "data.end": result.data["end"],
                "data.rows": result.data["rows"],
                "data.products": ",".join(result.data["products"]),
                "data.paths": ",".join(map(str, data_paths or []))[:500],
                "train_start": result.split["train_start"],
                "train_end": result.split["train_end"],
                "test_start": result.split["test_start"],
                "test_end": result.split["test_end"],
                "git_sha": sha,
            }
        )
        mlflow.log_params({k: ("" if v is None else str(v)[:500]) for k, v in params.items()})
        metrics = {}
        metrics.update(_numeric(result.test_metrics["model"], "test_"))
        metrics.update(_numeric(result.test_metrics["zscore"], "test_baseline_"))
        metrics.update(_numeric(result.test_metrics["persistence"], "test_persistence_"))
        for name, report in result.reports.items():
            for metric, fold_summary in report.summaries.items():
                for stat in ("mean", "std", "min", "max"):
                    value = getattr(fold_summary, stat)
                    if value is not None:
                        metrics[f"val_{name}_{metric}_{stat}"] = value
            metrics[f"val_{name}_degenerate_folds"] = report.summaries["pr_auc"].n_degenerate
        metrics.update({f"time_{k}_s": v for k, v in result.timings.items()})
        metrics["dev_positive_rate"] = result.data["dev_positive_rate"] or 0.0
        mlflow.log_metrics(metrics)
        for name, report in result.reports.items():
            for fold in report.folds:
                if fold.metrics["pr_auc"] is not None:
                    mlflow.log_metric(f"fold_{name}_pr_auc", fold.metrics["pr_auc"], step=fold.fold)
        _log_figures(result)
        mlflow.log_dict(summary, "summary.json")
        mlflow.log_dict(result.split, "split.json")
        mlflow.log_dict({n: r.to_dict() for n, r in result.reports.items()}, "folds.json")

        model_info = _log_model("model", predictor, example)
        baseline_info = _log_model("baseline", baseline, example)
        version = _register(client, model_info, model_name(settings, "ml"), run.info.run_id)
        baseline_version = _register(
            client, baseline_info, model_name(settings, "baseline"), run.info.run_id
        )
        mlflow.log_text(_training_report(result, version), "report.md")
        mlflow.set_tags({"registered_version": version, "baseline_version": baseline_version})

    common = {
        "run_id": run.info.run_id,
        "git_sha": sha,
        "feature_set_version": predictor.feature_set_version,
        "label_mode": str(label.get("mode")),
        "tau": str(label.get("tau")),
        "train_start": str(result.split["train_start"]),
        "train_end": str(result.split["train_end"]),
        "data_fingerprint": result.data["fingerprint"],
        "degraded": str(result.config.shuffle_labels).lower(),
    }
    _tag_version(
        client,
        model_name(settings, "ml"),
        version,
        {
            **common,
            "variant": "ml",
            "model_kind": result.selected,
            "threshold": str(predictor.threshold),
            "baseline_version": baseline_version,
            "test_pr_auc": str(summary["test"]["pr_auc"]),
            "test_baseline_pr_auc": str(summary["test"]["baseline_pr_auc"]),
            "test_persistence_pr_auc": str(summary["test"]["persistence_pr_auc"]),
        },
    )
    _tag_version(
        client,
        model_name(settings, "baseline"),
        baseline_version,
        {
            **common,
            "variant": "baseline",
            "model_kind": "zscore",
            "threshold": str(baseline.threshold),
            "ml_version": version,
        },
    )
    if alias:
        client.set_registered_model_alias(model_name(settings, "ml"), alias, version)
        client.set_registered_model_alias(model_name(settings, "baseline"), alias, baseline_version)
    log.info(
        "registered %s version %s (%s), alias %s",
        model_name(settings),
        version,
        result.selected,
        alias,
    )
    return TrainingRecord(
        run_id=run.info.run_id,
        version=version,
        baseline_version=baseline_version,
        model_uri=f"models:/{model_name(settings)}/{version}",
        summary=summary,
    )


def train_and_register(
    settings: Settings,
    data_paths: list[str],
    config=None,
    *,
    alias: str | None = CHALLENGER,
) -> dict:
    """The whole ``train`` stage: load (backfilling recordings), train, log, register.

    Returns :meth:`TrainingRecord.to_dict` plus ``timings`` (backfill, load, train, MLflow).
    Raises :class:`tasks.core.training.TrainingError` when the data cannot be trained on honestly.
    """
    from tasks.core.training import train
    from tasks.stages.data import load_frame

    started = time.perf_counter()
    frame, info = load_frame(data_paths, settings.data_dir / "cache" / "backfill")
    loaded_at = time.perf_counter()
    result = train(frame, config)
    trained_at = time.perf_counter()
    record = log_training(
        settings, result, example=frame.head(100), data_paths=data_paths, alias=alias
    )
    done = time.perf_counter()
    timings = {
        "backfill_s": info.backfill_s,
        "backfill_cached": info.backfill_cached,
        "load_s": info.load_s,
        "train_s": trained_at - loaded_at,
        "mlflow_s": done - trained_at,
        "total_s": done - started,
    }
    return {**record.to_dict(), "timings": timings}


def _register(client: MlflowClient, model_info: Any, name: str, run_id: str) -> str:
    """A new version of ``name`` from a logged model (over REST the model id must be given)."""
    with contextlib.suppress(MlflowException):  # it exists already
        client.create_registered_model(name)
    version = client.create_model_version(
        name, model_info.model_uri, run_id=run_id, model_id=model_info.model_id
    )
    return str(version.version)


def _tag_version(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value)[:5000])


# ------------------------------------------------------------------------- aliases and tags


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the alias (or the model) does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)


def _history(client: MlflowClient, name: str) -> list[str]:
    try:
        raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    except MlflowException:
        return []
    return [v for v in raw.split(",") if v]


def _set_history(client: MlflowClient, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-HISTORY_KEEP:]))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _who(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record_validation(
    settings: Settings, version: str, decision: dict, run_id: str | None = None
) -> None:
    """Tag a model version with a gate decision (what ``promote`` without ``--force`` requires)."""
    client = connect(settings)
    tags = {
        PASS_TAG: decision["decision"],
        "validation.reason": decision["reason"],
        "validation.at": _now(),
    }
    if run_id:
        tags["validation.run_id"] = run_id
    _tag_version(client, model_name(settings), version, tags)


@dataclass(frozen=True)
class AliasChange:
    action: str  # "promote" | "rollback" | "none"
    champion: str | None
    previous: str | None
    baseline_champion: str | None
    who: str
    why: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _move_baseline(client: MlflowClient, settings: Settings, ml_version: str) -> str | None:
    baseline_version = version_tags(client, model_name(settings), ml_version).get(
        "baseline_version"
    )
    if baseline_version:
        client.set_registered_model_alias(
            model_name(settings, "baseline"), CHAMPION, baseline_version
        )
    return baseline_version


def promote(
    settings: Settings,
    version: str | int | None = None,
    *,
    force: bool = False,
    who: str | None = None,
    why: str | None = None,
) -> AliasChange:
    """Move ``champion`` to ``version`` (default: the challenger) if its gate decision passed.

    Without ``force`` the version must carry ``validation.decision=pass``. The previous champion
    is remembered (``previous_champion`` tag and the model's champion history).
    """
    client = connect(settings)
    name = model_name(settings)
    if version is None:
        version = alias_version(client, name, CHALLENGER)
        if version is None:
            raise RegistryError(
                f"{name} has no {CHALLENGER!r} alias: train first or name a version"
            )
    version = str(version)
    try:
        tags = version_tags(client, name, version)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    decision = tags.get(PASS_TAG)
    if decision != "pass" and not force:
        raise RegistryError(
            f"{name} version {version} has {PASS_TAG}={decision or 'none'}: validate it first "
            f"(its gates must pass) or promote with --force"
        )
    who = _who(who)
    current = alias_version(client, name, CHAMPION)
    if current == version:
        return AliasChange("none", version, current, None, who, "already champion")
    why = why or ("validation passed" if decision == "pass" else f"forced ({PASS_TAG}={decision})")
    history = _history(client, name)
    if current and (not history or history[-1] != current):
        history.append(current)  # the alias was set by hand: remember it too
    history.append(version)
    now = _now()
    _tag_version(
        client,
        name,
        version,
        {
            "promoted_at": now,
            "promoted_by": who,
            "promotion_reason": why,
            "promotion_forced": str(force and decision != "pass").lower(),
            "previous_champion": current or "",
        },
    )
    if current:
        _tag_version(
            client, name, current, {"demoted_at": now, "demoted_by": who, "replaced_by": version}
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    _set_history(client, name, history)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    baseline = _move_baseline(client, settings, version)
    log.info("promoted %s version %s (was %s) by %s: %s", name, version, current, who, why)
    return AliasChange("promote", version, current, baseline, who, why)


def rollback(settings: Settings, *, who: str | None = None, why: str | None = None) -> AliasChange:
    """Move ``champion`` back to the previous champion.

    The previous champion is the top of the champion history, after dropping the current
    champion from it; when no history exists, the current version's ``previous_champion`` tag.
    """
    client = connect(settings)
    name = model_name(settings)
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no {CHAMPION!r} alias: nothing to roll back")
    history = _history(client, name)
    if history and history[-1] == current:
        history.pop()
    target = (
        history[-1] if history else version_tags(client, name, current).get("previous_champion")
    )
    if not target or target == current:
        raise RegistryError(f"no previous champion of {name} recorded before version {current}")
    who = _who(who)
    why = why or "rollback"
    now = _now()
    _tag_version(
        client,
        name,
        current,
        {"rolled_back_at": now, "rolled_back_by": who, "rollback_reason": why},
    )
    _tag_version(
        client, name, target, {"restored_at": now, "restored_by": who, "restore_reason": why}
    )
    client.set_registered_model_alias(name, CHAMPION, target)
    _set_history(client, name, history or [target])
    baseline = _move_baseline(client, settings, target)
    log.info("rolled %s champion back from %s to %s by %s: %s", name, current, target, who, why)
    return AliasChange("rollback", target, current, baseline, who, why)


def describe_aliases(settings: Settings) -> dict:
    """Where champion and challenger point, for both variants, plus the champion history."""
    client = connect(settings)
    out = {}
    for variant in VARIANTS:
        name = model_name(settings, variant)
        out[variant] = {
            alias: alias_version(client, name, alias) for alias in (CHAMPION, CHALLENGER)
        }
    out["history"] = _history(client, model_name(settings))
    return out
