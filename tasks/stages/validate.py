"""The ``validate`` stage: the challenger against the champion on data neither has seen.

``validate_challenger``: challenger and champion scored on the same most recent window that
neither was trained on (rows from the later of their ``train_end`` plus the embargo on), the data
contracts run on that window, scoring latency measured, the gates of :mod:`tasks.core.gates`
decided.
The decision and its figures go to an MLflow run, to tags on the challenger version (which
``promote`` reads) and to a Markdown and JSON report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from tasks.core.evaluation import (
    embargo_for,
    epoch_seconds,
    expected_calibration_error,
    ranking_metrics,
)
from tasks.core.gates import (
    GateConfig,
    GateDecision,
    GateFigures,
    decide,
    markdown_report,
    session_figures,
)
from tasks.core.labels import LabelSpec
from tasks.core.models import SpikePredictor, feature_matrix, ranking_baselines
from tasks.core.scoring import time_span, unseen_window
from tasks.io import model_cards, model_store, plots, registry
from tasks.settings import Settings
from tasks.stages.data import load_frame

log = logging.getLogger("cryptovol.validation")


# ------------------------------------------------------------------------------- validation


@dataclass
class ValidationOutcome:
    decision: GateDecision
    challenger_version: str
    champion_version: str | None
    window: dict
    figures: dict
    run_id: str
    report_paths: dict[str, str]

    def to_dict(self) -> dict:
        return {
            "decision": self.decision.decision,
            "reason": self.decision.reason(),
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "window": self.window,
            "figures": self.figures,
            "checks": [c.__dict__ for c in self.decision.checks],
            "run_id": self.run_id,
            "reports": self.report_paths,
        }


def _latency_p95_ms(predictor: SpikePredictor, frame: pd.DataFrame, n: int) -> float | None:
    """p95 wall time of single-row ``predict_array`` calls (the serving path's model call)."""
    if frame.empty:
        return None
    X = feature_matrix(frame, predictor.feature_names).to_numpy()
    picks = np.linspace(0, len(X) - 1, min(n, len(X))).astype(int)
    predictor.predict_array(X[picks[:1]])  # warm-up
    times = []
    for i in picks:
        row = X[i : i + 1]
        started = time.perf_counter()
        predictor.predict_array(row)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.percentile(times, 95))


def _contracts(frame: pd.DataFrame) -> tuple[bool, tuple[str, ...]]:
    from data_contracts.validate import validate_frame

    report = validate_frame("features", frame)
    return report.success, tuple(f"{o.expectation}({o.column or 'table'})" for o in report.failures)


def _measure(
    rows: pd.DataFrame,
    y: np.ndarray,
    challenger: SpikePredictor,
    champion: SpikePredictor | None,
    latency_rows: int,
    contracts: tuple[bool | None, tuple[str, ...]],
) -> tuple[GateFigures, dict[str, np.ndarray]]:
    """Every scorer on the same rows; the challenger's calibration and latency."""
    scores: dict[str, np.ndarray] = {}
    if len(y):
        scores["challenger"] = challenger.predict_proba(rows)
        scores.update(ranking_baselines(rows))
        if champion is not None:
            scores["champion"] = champion.predict_proba(rows)
    pr_auc = {k: ranking_metrics(y, v)["pr_auc"] for k, v in scores.items()}
    sessions = ()
    if len(y):
        judged = {k: scores[k] for k in ("challenger", "persistence", "zscore")}
        sessions = session_figures(epoch_seconds(rows["ts"]), y, judged)
    figures = GateFigures(
        rows=len(y),
        positives=int(y.sum()),
        challenger_pr_auc=pr_auc.get("challenger"),
        zscore_pr_auc=pr_auc.get("zscore"),
        persistence_pr_auc=pr_auc.get("persistence"),
        champion_pr_auc=pr_auc.get("champion"),
        challenger_ece=expected_calibration_error(y, scores["challenger"]) if len(y) else None,
        challenger_mean_prob=float(np.mean(scores["challenger"])) if len(y) else None,
        positive_rate=float(np.mean(y)) if len(y) else None,
        latency_p95_ms=_latency_p95_ms(challenger, rows, latency_rows),
        contracts_passed=contracts[0],
        contract_failures=contracts[1],
        sessions=sessions,
    )
    return figures, scores


def _log_decision(
    settings: Settings, client, outcome: dict, report: str, y: np.ndarray, scores: dict
) -> str:
    """An MLflow run (stage=validate) with the figures, the report and a PR-curve plot."""
    with mlflow.start_run(
        experiment_id=registry.experiment_id(settings, client),
        run_name=f"validate-v{outcome['challenger_version']}",
    ) as run:
        mlflow.set_tags(
            {
                "stage": "validate",
                "challenger_version": outcome["challenger_version"],
                "champion_version": outcome["champion_version"] or "",
                "decision": outcome["decision"],
            }
        )
        mlflow.log_params({"gate." + k: v for k, v in outcome["config"].items()})
        numeric = {
            k: float(v)
            for k, v in outcome["figures"].items()
            if isinstance(v, int | float) and np.isfinite(v)
        }
        mlflow.log_metrics({**numeric, "passed": float(outcome["decision"] == "pass")})
        mlflow.log_text(report, "validation_report.md")
        mlflow.log_dict(outcome, "validation_decision.json")
        if len(y) and 0 < y.sum() < len(y):
            import matplotlib.pyplot as plt

            fig = plots.pr_curves(y, scores, title="Validation window: precision-recall")
            mlflow.log_figure(fig, "plots/validation_pr_curve.png")
            plt.close(fig)
    return run.info.run_id


def validate_challenger(
    settings: Settings,
    data_paths: list[str],
    *,
    gate_config: GateConfig | None = None,
    window_s: float | None = None,
    check_contracts: bool = True,
    latency_rows: int = 200,
    report_dir: Path | None = None,
) -> ValidationOutcome:
    """Score challenger and champion on the unseen recent window, decide, log and report."""
    client = registry.connect(settings)
    name = registry.model_name(settings)
    challenger_version = registry.alias_version(client, name, registry.CHALLENGER)
    if challenger_version is None:
        raise registry.RegistryError(f"{name} has no {registry.CHALLENGER!r} alias: train first")
    champion_version = registry.alias_version(client, name, registry.CHAMPION)
    models = {
        role: model_store.load_predictor(f"models:/{name}/{version}")
        for role, version in (("challenger", challenger_version), ("champion", champion_version))
        if version is not None
    }

    label = models["challenger"].label  # both are judged against the challenger's label
    embargo = embargo_for(int(label.get("horizon_s", 60)))
    train_ends = [p.info["train_end"] for p in models.values() if p.info.get("train_end")]
    if not train_ends:
        log.warning("neither model records its training span: validating on all rows")
    frame, _ = load_frame(data_paths, settings.backfill_cache_dir)
    window = unseen_window(frame, train_ends, embargo, window_s)
    rows, y = LabelSpec.from_dict(label).labelled(window)
    contracts = _contracts(window) if check_contracts and len(window) else (None, ())
    gate_figures, scores = _measure(
        rows, y, models["challenger"], models.get("champion"), latency_rows, contracts
    )
    decision = decide(gate_figures, gate_config or GateConfig())

    after = max(train_ends, key=pd.Timestamp) if train_ends else None
    window_info = {**time_span(rows), "embargo_s": embargo, "after": after, "rows": len(y)}
    figures = decision.to_dict()["figures"]
    if "champion" in models and len(rows):
        figures["champion_latency_p95_ms"] = _latency_p95_ms(models["champion"], rows, latency_rows)
    report = markdown_report(decision, f"Validation of {name} v{challenger_version}")
    report += (
        f"\nChampion: {champion_version or 'none'}. Window: {window_info['start']} to "
        f"{window_info['end']} (rows from {after} + {embargo:.0f} s embargo on), label {label}.\n"
    )
    logged = {
        **decision.to_dict(),
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "window": window_info,
    }
    run_id = _log_decision(settings, client, logged, report, y, scores)
    registry.record_validation(settings, challenger_version, decision.to_dict(), run_id)
    model_cards.refresh(client, settings, {"ml": [challenger_version]})

    report_dir = report_dir or settings.reports_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    base = report_dir / f"validation-v{challenger_version}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    paths = {"markdown": str(base.with_suffix(".md")), "json": str(base.with_suffix(".json"))}
    outcome = ValidationOutcome(
        decision, challenger_version, champion_version, window_info, figures, run_id, paths
    )
    base.with_suffix(".md").write_text(report)
    base.with_suffix(".json").write_text(json.dumps(outcome.to_dict(), indent=2, default=str))
    log.info("validation of %s v%s: %s", name, challenger_version, decision.reason())
    return outcome
