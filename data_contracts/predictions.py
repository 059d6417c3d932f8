"""The predictions contract: the records the scorer writes to ``ticks.predictions``.

A file of them is NDJSON (plain or gzip), one record per line, as a dump of the topic gives
(``tasks.core.predictions.prediction_record`` makes each one). The frame keeps the records' own
values; ``ts`` and ``scored_at`` are parsed to tz-aware UTC (NaT when they do not parse), and a
helper column turns the row rule "the flag is the score at the threshold" into a per-row value
(``spike_consistent``). A repeated record id is allowed: delivery is at least once, and a
repeated feature record yields a prediction with the same id.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.predictions import PREDICTIONS_SCHEMA_VERSION

PREDICTION_COLUMNS = (
    "schema_version",
    "record_id",
    "product_id",
    "ts",
    "score",
    "spike",
    "threshold",
    "model_name",
    "model_version",
    "model_variant",
    "scored_at",
    "latency_ms",
)
VARIANTS = ("ml", "baseline")


def predictions_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The records as a frame, with parsed times and the ``spike_consistent`` helper."""
    frame = pd.DataFrame.from_records(list(records))
    for name in PREDICTION_COLUMNS:
        if name not in frame.columns:
            frame[name] = None
    for name in ("ts", "scored_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True, errors="coerce", format="ISO8601")
    for name in ("score", "threshold", "latency_ms"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    flagged = frame["spike"].map(lambda v: v if isinstance(v, bool) else None)
    frame["spike_consistent"] = flagged == (frame["score"] >= frame["threshold"])
    return frame


def read_predictions(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Prediction records from NDJSON files (``.gz`` too); a line that is not a JSON object is
    a :class:`ValueError` naming the file and line."""
    records = []
    paths = [Path(p) for p in paths]
    if not paths:
        raise FileNotFoundError("no prediction files given")
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{lineno}: not a JSON object")
                records.append(record)
    return predictions_frame(records)


def prediction_expectations(products: Iterable[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="at least one prediction"),
        gxe.ExpectColumnValuesToBeInSet(
            column="schema_version",
            value_set=[PREDICTIONS_SCHEMA_VERSION],
            description=f"schema version {PREDICTIONS_SCHEMA_VERSION}",
        ),
    ]
    out += [
        gxe.ExpectColumnValuesToNotBeNull(column=name, description="required")
        for name in PREDICTION_COLUMNS
        if name != "schema_version"
    ]
    out += [
        gxe.ExpectColumnTypeToBe(column=name, type_="datetime64[ns, UTC]", description="UTC")
        for name in ("ts", "scored_at")
    ]
    out += [
        gxe.ExpectColumnValuesToBeInSet(
            column="product_id", value_set=sorted(products), description="known product"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="score", min_value=0.0, max_value=1.0, description="a probability"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="threshold", min_value=0.0, max_value=1.0, description="a probability"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="spike_consistent",
            value_set=[True],
            description="spike is score >= threshold",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="model_variant", value_set=list(VARIANTS), description="ml or baseline"
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="model_version", regex=r"^[1-9][0-9]*$", description="a registry version"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="latency_ms", min_value=0.0, description="scoring latency >= 0"
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="scored_at",
            column_B="ts",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            description="scored at or after the feature time",
        ),
    ]
    return out
