"""Drift of the current features (and of the model's scores) from the training sample, with
Evidently 0.7.

:func:`run_report` builds and runs the Evidently report: feature drift (every feature of the
feature set), prediction drift (the judged model's score on both data sets) and a data-quality
summary (rows, missing cells, empty, constant and duplicated columns and rows; Evidently's
per-column ``DataSummaryPreset`` would double the report's time). :func:`summarize` reads its
figures from ``json.loads(snapshot.json())``, by metric type and column, never by position, into
a :class:`DriftSummary`; pushing and storing those figures is :mod:`monitoring.export` and
:mod:`monitoring.report_store`.

The drift test is fixed, not Evidently's size-dependent default: the Wasserstein distance between
the two distributions in units of the reference's standard deviation, a feature drifted at 0.5 or
more. One hour of the real recordings never moved more than 40 % of the features that far from
the training sample of the whole recordings, while a simulated wild market moved 80 %
(docs/monitoring.md has the measurements), so the share of drifted features separates a regime
the model never saw from the hour-to-hour swings it was trained on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

DRIFT_METHOD = "wasserstein"  # Evidently's "Wasserstein distance (normed)"
DRIFT_THRESHOLD = 0.5  # in reference standard deviations
SCORE_COLUMN = "score"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_MISSING = "evidently:metric_v2:DatasetMissingValueCount"
_ROWS = "evidently:metric_v2:RowCount"


class DriftReportError(ValueError):
    """The report lacks a figure it should have, or its figures disagree."""


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """The figures of one drift report."""

    share: float  # share of features that drifted
    drifted: int
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None  # the model's score, when both data sets were scored
    rows_current: int
    missing_share_current: float | None  # share of missing cells in the current features
    notes: tuple[str, ...] = field(default_factory=tuple)

    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def top(self, n: int = 5) -> list[FeatureDrift]:
        return sorted(self.features, key=lambda f: -f.score)[:n]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_distance(method: str) -> bool:
    """Distances drift when large; p-values drift when small (Evidently's naming)."""
    return "p_value" not in method.lower().replace("-", "_").replace(" ", "_")


def summarize(result: dict[str, Any], features: Sequence[str]) -> DriftSummary:
    """The figures of an Evidently snapshot's JSON (``json.loads(snapshot.json())``).

    Metrics are found by type and column. A feature the report did not test (no values on one
    side) is left out of the share and named in ``notes``. The drifted count is checked against
    Evidently's own ``DriftedColumnsCount``.
    """
    by_type: dict[str, list[dict]] = {}
    for metric in result.get("metrics", []):
        by_type.setdefault(metric["config"]["type"], []).append(metric)
    drifts = {m["config"]["column"]: m for m in by_type.get(_VALUE_DRIFT, [])}
    notes = []
    per_feature = []
    for name in features:
        metric = drifts.get(name)
        score = None if metric is None else metric["value"]
        if score is None or not math.isfinite(float(score)):
            notes.append(f"{name}: not tested (no values on one side)")
            continue
        config = metric["config"]
        threshold = float(config["threshold"])
        score = float(score)
        drifted = score >= threshold if _is_distance(config["method"]) else score < threshold
        per_feature.append(FeatureDrift(name, config["method"], score, threshold, drifted))
    if not per_feature:
        raise DriftReportError("no feature could be tested for drift")
    counts = by_type.get(_DRIFTED_COUNT)
    if not counts:
        raise DriftReportError("the report has no DriftedColumnsCount")
    evidently_count = round(float(counts[0]["value"]["count"]))
    drifted = sum(f.drifted for f in per_feature)
    if evidently_count != drifted:
        raise DriftReportError(
            f"Evidently counts {evidently_count} drifted features, their scores say {drifted}"
        )
    prediction = None
    if SCORE_COLUMN in drifts and SCORE_COLUMN not in features:
        m = drifts[SCORE_COLUMN]
        score = float(m["value"])
        prediction = FeatureDrift(
            SCORE_COLUMN,
            m["config"]["method"],
            score,
            float(m["config"]["threshold"]),
            score >= float(m["config"]["threshold"])
            if _is_distance(m["config"]["method"])
            else score < float(m["config"]["threshold"]),
        )
    missing = by_type.get(_MISSING)
    rows = by_type.get(_ROWS)
    return DriftSummary(
        share=drifted / len(per_feature),
        drifted=drifted,
        features=tuple(per_feature),
        prediction=prediction,
        rows_current=round(float(rows[0]["value"])) if rows else 0,
        missing_share_current=float(missing[0]["value"]["share"]) if missing else None,
        notes=tuple(notes),
    )


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    *,
    method: str = DRIFT_METHOD,
    threshold: float = DRIFT_THRESHOLD,
    drift_share: float = 0.5,
):
    """The Evidently snapshot comparing ``current`` with ``reference``.

    Both frames hold the ``features`` columns, and a ``score`` column when prediction drift is
    wanted. Columns with no value on either side are left out (Evidently cannot test them).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DatasetStats

    testable = [f for f in features if reference[f].notna().any() and current[f].notna().any()]
    columns = list(testable)
    with_score = SCORE_COLUMN in reference and SCORE_COLUMN in current
    if with_score:
        columns.append(SCORE_COLUMN)
    definition = DataDefinition(numerical_columns=columns)
    items: list[Any] = [
        DataDriftPreset(
            columns=testable,
            num_method=method,
            num_threshold=threshold,
            drift_share=drift_share,
        )
    ]
    if with_score:
        items.append(ValueDrift(column=SCORE_COLUMN, method=method, threshold=threshold))
    items.append(DatasetStats())
    report = Report(items, include_tests=False)
    return report.run(
        Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition),
    )


def snapshot_figures(snapshot) -> dict[str, Any]:
    """The snapshot's results as plain JSON (the one way figures leave Evidently)."""
    return json.loads(snapshot.json())
