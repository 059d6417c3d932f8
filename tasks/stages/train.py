"""The ``train`` stage: data in (contracts checked), candidates trained against the baselines,
the run logged to MLflow with its figures, both models registered, the ``challenger`` alias set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from tasks.core.scoring import format_metric as fmt
from tasks.core.scoring import missing_input_table, session_table
from tasks.io import model_cards, plots
from tasks.io.heap import map_large_blocks
from tasks.io.model_store import log_model
from tasks.io.reference import log_reference_sample
from tasks.io.registry import (
    CHALLENGER,
    connect,
    experiment_id,
    git_sha,
    model_name,
    register_version,
    tag_version,
)
from tasks.settings import Settings

log = logging.getLogger("cryptovol.train")


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
        f"{result.config.embargo:.0f} s): {t['rows']} rows, spike rate {fmt(t['positive_rate'])}.",
        "",
        "| scorer | test PR-AUC | test ROC-AUC | brier |",
        "| --- | --- | --- | --- |",
    ]
    for name, metrics in result.test_metrics.items():
        lines.append(
            f"| {name} | {fmt(metrics['pr_auc'])} | {fmt(metrics['roc_auc'])} | "
            f"{fmt(metrics['brier'])} |"
        )
    lines += ["", "| walk-forward | mean val PR-AUC | std | folds | degenerate folds |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for name, v in s["validation"].items():
        folds = ", ".join("n/a" if x is None else f"{x:.3f}" for x in v["pr_auc_folds"])
        mean, std, degenerate = (
            fmt(v["pr_auc_mean"]),
            fmt(v["pr_auc_std"]),
            v["degenerate_folds"],
        )
        lines.append(f"| {name} | {mean} | {std} | {folds} | {degenerate} |")
    days, sessions = s["days"], s["sessions"]
    if days.get("pooled"):
        names = [n for n in days["pooled"]["pr_auc"] if n not in ("persistence", "zscore")]
        lines += [
            "",
            "Leave one UTC day out (train on the other days, tau fitted on them, judge on this "
            "one; what selects the model; PR-AUC [90 % block-bootstrap interval]; '(judged)': "
            "enough spikes to judge a ranking inside the day):",
            "",
            *session_table(days, [*names, "persistence", "zscore"]),
        ]
    if sessions.get("pooled"):
        names = [n for n in sessions["pooled"]["pr_auc"] if n not in ("persistence", "zscore")]
        lines += [
            "",
            "Leave one session out (train on the other sessions, judge on this one; PR-AUC "
            "[90 % block-bootstrap interval]; '(judged)': enough spikes to judge a ranking "
            "inside the session):",
            "",
            *session_table(sessions, [*names, "persistence", "zscore"]),
        ]
    if sessions.get("missing_inputs"):
        lines += [
            "",
            "Missing inputs (each family blanked in the held-out rows; pooled PR-AUC):",
            "",
            *missing_input_table(sessions["missing_inputs"], result.selected),
        ]
    if s["notes"]:
        lines += ["", "Notes:", *[f"- {n}" for n in s["notes"]]]
    return "\n".join(lines) + "\n"


def _held_out_metrics(held_out: dict, selected: str, prefix: str, unit: str) -> dict[str, float]:
    """Leave-one-out PR-AUC of every scorer, pooled and per held-out session or day (``unit``),
    and the selected model's interval and gap to persistence, as MLflow metrics."""
    out: dict[str, float] = {}
    pooled = held_out.get("pooled")
    if not pooled:
        return out
    parts = [("pooled", pooled)]
    parts += [(f"{unit}{str(f['session']).replace('-', '')}", f) for f in held_out["sessions"]]
    for where, figures in parts:
        out[f"{prefix}_{where}_positive_rate"] = figures["positive_rate"] or 0.0
        for name, value in figures["pr_auc"].items():
            if value is not None:
                out[f"{prefix}_{where}_{name}_pr_auc"] = value
    for key, name in (("interval", "pooled_selected"), ("minus_persistence", "gap")):
        low, high = pooled.get(key, {}).get(selected, (None, None))
        if low is not None:
            out[f"{prefix}_{name}_low"], out[f"{prefix}_{name}_high"] = low, high
    return out


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

    ``example`` is a frame of training feature rows: two make the input example, a sample of
    those up to the training end is stored as the drift reference.
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
        metrics.update(_held_out_metrics(result.sessions, result.selected, "loso", "session"))
        metrics.update(_held_out_metrics(result.days, result.selected, "lodo", "day"))
        mlflow.log_metrics(metrics)
        for name, report in result.reports.items():
            for fold in report.folds:
                if fold.metrics["pr_auc"] is not None:
                    mlflow.log_metric(f"fold_{name}_pr_auc", fold.metrics["pr_auc"], step=fold.fold)
        _log_figures(result)
        mlflow.log_dict(summary, "summary.json")
        mlflow.log_dict(result.split, "split.json")
        mlflow.log_dict({n: r.to_dict() for n, r in result.reports.items()}, "folds.json")
        mlflow.log_dict(result.sessions, "sessions.json")
        mlflow.log_dict(result.days, "days.json")

        model_info = log_model("model", predictor, example)
        baseline_info = log_model("baseline", baseline, example)
        version = register_version(client, model_info, model_name(settings, "ml"), run.info.run_id)
        baseline_version = register_version(
            client, baseline_info, model_name(settings, "baseline"), run.info.run_id
        )
        mlflow.log_text(_training_report(result, version), "report.md")
        log_reference_sample(example, result.split)  # the drift monitor's reference
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
    tag_version(
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
            **_session_tags(result.sessions, result.days, result.selected),
        },
    )
    tag_version(
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
    model_cards.refresh(client, settings, {"ml": [version], "baseline": [baseline_version]})
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


def _session_tags(sessions: dict, days: dict, selected: str) -> dict[str, str]:
    tags = {}
    for prefix, held_out, unit in (("loso", sessions, "sessions"), ("lodo", days, "days")):
        pooled = held_out.get("pooled")
        if not pooled:
            tags[prefix] = f"not measured (fewer than two {unit})"
            continue
        tags.update(
            {
                f"{prefix}_pr_auc": str(pooled["pr_auc"].get(selected)),
                f"{prefix}_persistence_pr_auc": str(pooled["pr_auc"]["persistence"]),
                f"{prefix}_zscore_pr_auc": str(pooled["pr_auc"]["zscore"]),
                f"{prefix}_{unit}": str(len(held_out["sessions"])),
            }
        )
    if days.get("selection"):
        tags["lodo_worst_day_gap"] = str(days["selection"]["worst_day_gap"].get(selected))
    return tags


def train_and_register(
    settings: Settings,
    data_paths: list[str],
    config=None,
    *,
    alias: str | None = CHALLENGER,
    check_contracts: bool = True,
    max_rows_per_product: int | None = None,
    max_rows: int | None = None,
) -> dict:
    """The whole ``train`` stage: admit, load (backfilling recordings), train, log, register.

    The load keeps a session of each day of each product within ``max_rows_per_product`` and an
    equal share of ``max_rows`` (defaults: the ``train_max_rows_per_product`` and
    ``train_max_rows`` settings; 0: no such cap); ``data`` in the result says what was used and
    the budget per product that was applied (``product_budget``).

    Inputs pass their data contract first (recordings the raw one, Parquet the features one); a
    failing batch is set aside in the quarantine folder and never trained on, and
    :class:`data_contracts.gate.NothingAdmitted` is raised when none passes.
    ``check_contracts=False`` skips the check (and logs that it did).

    Returns :meth:`TrainingRecord.to_dict` plus ``timings`` (backfill, load, train, MLflow) and
    the ``admitted`` inputs. Raises :class:`tasks.core.training.TrainingError` when the data
    cannot be trained on honestly.
    """
    from data_contracts.gate import admit_inputs
    from tasks.core.dataset import COLUMNS
    from tasks.core.training import UNUSED_COLUMNS, train
    from tasks.stages.data import load_frame

    started = time.perf_counter()
    map_large_blocks()
    if check_contracts:
        data_paths = admit_inputs(settings, data_paths)
    else:
        log.warning("data contracts skipped: training on %s unchecked", data_paths)
    admitted_at = time.perf_counter()
    if max_rows_per_product is None:
        max_rows_per_product = settings.train_max_rows_per_product
    if max_rows is None:
        max_rows = settings.train_max_rows
    frame, info = load_frame(
        data_paths,
        settings.backfill_cache_dir,
        max_rows_per_product or None,
        max_rows=max_rows or None,
        columns=[c for c in COLUMNS if c not in UNUSED_COLUMNS],
        float32_features=True,
    )
    loaded_at = time.perf_counter()
    handed_over = [frame]  # train() frees the loaded frame once it holds its time-ordered rows
    del frame
    result = train(handed_over.pop(), config)
    trained_at = time.perf_counter()
    record = log_training(settings, result, example=result.rows, data_paths=data_paths, alias=alias)
    done = time.perf_counter()
    timings = {
        "contracts_s": admitted_at - started,
        "backfill_s": info.backfill_s,
        "backfill_cached": info.backfill_cached,
        "load_s": info.load_s,
        "train_s": trained_at - loaded_at,
        "mlflow_s": done - trained_at,
        "total_s": done - started,
    }
    data = {
        key: getattr(info, key)
        for key in (
            "rows_used",
            "rows_available",
            "days_used",
            "days_available",
            "max_rows",
            "max_rows_per_product",
            "product_budget",
        )
    }
    return {**record.to_dict(), "timings": timings, "admitted": list(data_paths), "data": data}
