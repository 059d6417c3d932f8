"""The predictions contract on records made by the scorer's own code: clean ones pass, each
broken rule fails naming its column, and ``cryptovol validate-data predictions`` exits 0, 1, 2."""

from __future__ import annotations

import gzip
import json

import pytest

from data_contracts.predictions import predictions_frame, read_predictions
from data_contracts.suites import ContractOptions
from data_contracts.validate import validate_frame
from tasks.cli import main as cli
from tasks.core.predictions import FeatureRecord, ModelStamp, prediction_record
from tasks.core.timeutil import format_ts

START = 1767225600.0
MODEL = ModelStamp("volatility-spike", "3", "ml", 0.21)


def records(n: int = 40) -> list[dict]:
    out = []
    for i in range(n):
        ts = START + i
        feature = FeatureRecord(
            f"BTC-USD|rec.ndjson|{i}|0", "BTC-USD", format_ts(ts), ts, "fs1", {}
        )
        scored_at = format_ts(ts + 0.5)
        out.append(prediction_record(feature, (i % 10) / 10, MODEL, scored_at, 0.4))
    out.append(dict(out[5]))  # a repeated feature record: same id, allowed
    return out


def check(rows: list[dict]):
    return validate_frame("predictions", predictions_frame(rows), ContractOptions())


def test_clean_predictions_pass():
    report = check(records())
    assert report.success, report.table()
    assert report.rows == 41


@pytest.mark.parametrize(
    ("field", "value", "column"),
    [
        ("score", 1.5, "score"),
        ("score", "high", "score"),
        ("spike", True, "spike_consistent"),  # row 0 scores 0.0, below the threshold
        ("model_variant", "canary", "model_variant"),
        ("model_version", "latest", "model_version"),
        ("record_id", None, "record_id"),
        ("ts", "yesterday", "ts"),
        ("latency_ms", -1.0, "latency_ms"),
        ("product_id", "DOGE-EUR", "product_id"),
        ("schema_version", 2, "schema_version"),
        ("scored_at", format_ts(START - 60), "scored_at,ts"),
    ],
)
def test_each_broken_rule_fails_naming_its_column(field, value, column):
    rows = records()
    rows[0] = {**rows[0], field: value}
    report = check(rows)
    assert not report.success
    assert column in report.failed_columns(), report.table()


def test_validate_data_predictions_command(tmp_path):
    clean = tmp_path / "predictions.ndjson.gz"
    with gzip.open(clean, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records())
    assert read_predictions([clean]).shape[0] == 41
    assert cli(["validate-data", "predictions", str(clean)]) == 0

    broken = tmp_path / "broken.ndjson"
    rows = records()
    rows[3]["score"] = -0.2
    broken.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli(["validate-data", "predictions", str(broken)]) == 1

    garbage = tmp_path / "garbage.ndjson"
    garbage.write_text('{"record_id": "x"}\nnot json\n')
    assert cli(["validate-data", "predictions", str(garbage)]) == 2
