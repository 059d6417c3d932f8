"""Feature values to the predictor's array, feature records in, prediction records out, score
histogram buckets, and the feature catalogue: the pure parts of serving."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from tasks.core.feature_catalog import catalog, describe
from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureRow
from tasks.core.predictions import (
    SCORE_BUCKETS,
    FeatureRecordError,
    ModelStamp,
    bucket_counts,
    feature_array,
    parse_feature_record,
    prediction_record,
)

NAMES = ("a", "b", "c")


def test_feature_array_orders_columns_and_lists_what_is_missing():
    X, missing = feature_array([{"c": 3.0, "a": 1, "x": "ignored"}, {"b": None}, {}], NAMES)
    assert X.dtype == np.float64 and X.shape == (3, 3)
    np.testing.assert_array_equal(X[0], [1.0, np.nan, 3.0])
    assert np.isnan(X[1]).all() and np.isnan(X[2]).all()
    assert missing == [["b"], ["a", "b", "c"], ["a", "b", "c"]]
    empty, none = feature_array([], NAMES)
    assert empty.shape == (0, 3) and none == []


def feature_bytes(**changes) -> bytes:
    values = tuple(float(i) if i % 3 else math.nan for i in range(len(FEATURE_NAMES)))
    row = FeatureRow("BTC-USD", 1767225600.25, "BTC-USD|f.ndjson|7|0", values)
    record = {**row.to_record(), **changes}
    return json.dumps(record).encode()


def test_a_feature_record_round_trips():
    record = parse_feature_record(feature_bytes())
    assert (record.record_id, record.product_id) == ("BTC-USD|f.ndjson|7|0", "BTC-USD")
    assert record.ts == "2026-01-01T00:00:00.250000Z" and record.event_ts == 1767225600.25
    assert record.feature_set_version == FEATURE_SET_VERSION
    X, missing = feature_array([record.features], FEATURE_NAMES)
    assert missing == [[n for i, n in enumerate(FEATURE_NAMES) if i % 3 == 0]]
    assert X[0][1] == 1.0


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (None, "empty record"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (feature_bytes(schema_version=2), "schema_version"),
        (feature_bytes(record_id=""), "record_id"),
        (feature_bytes(product_id=7), "product_id"),
        (feature_bytes(product_id="../x"), "product_id"),
        (feature_bytes(product_id="X" * 10_000), "product_id"),
        (feature_bytes(ts="noon"), "ts"),
        (feature_bytes(features=[1.0]), "features"),
        (feature_bytes(features={"ret_std": "0.1"}), "features.ret_std"),
        (feature_bytes(features={"n": True}), "features.n"),
        (
            b'{"schema_version": 1, "record_id": "r", "product_id": "BTC-USD", "ts": '
            b'"2026-01-01T00:00:00Z", "feature_set_version": "fs1", "features": {"n": Infinity}}',
            "features.n",
        ),
    ],
)
def test_a_bad_feature_record_is_refused_naming_the_field(value, named):
    with pytest.raises(FeatureRecordError, match=named.replace(".", r"\.")):
        parse_feature_record(value)


def test_prediction_record_follows_the_contract():
    feature = parse_feature_record(feature_bytes())
    model = ModelStamp("volatility-spike", "3", "ml", 0.21)
    record = prediction_record(feature, 0.21, model, "2026-01-01T00:00:01Z", 0.41234)
    assert record == {
        "schema_version": 1,
        "record_id": "BTC-USD|f.ndjson|7|0",
        "product_id": "BTC-USD",
        "ts": "2026-01-01T00:00:00.250000Z",
        "score": 0.21,
        "spike": True,  # at the threshold is a spike
        "threshold": 0.21,
        "model_name": "volatility-spike",
        "model_version": "3",
        "model_variant": "ml",
        "scored_at": "2026-01-01T00:00:01Z",
        "latency_ms": 0.412,
    }
    below = prediction_record(feature, 0.2099, model, "x", 0.0)
    assert below["spike"] is False and below["record_id"] == record["record_id"]


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=300))
def test_bucket_counts_add_what_observing_each_score_adds(scores):
    histogram = Histogram("h", "h", buckets=SCORE_BUCKETS, registry=CollectorRegistry())
    for score in scores:
        histogram.observe(score)
    cumulative = np.cumsum(bucket_counts(np.array(scores, dtype=float)))
    observed = [s.value for s in histogram.collect()[0].samples if s.name.endswith("_bucket")]
    assert cumulative.tolist() == observed


def test_every_feature_has_a_meaning_and_a_unit():
    described = catalog()
    assert [d["name"] for d in described] == list(FEATURE_NAMES)
    assert all(d["meaning"] != "(undocumented)" and d["unit"] != "unknown" for d in described)
    assert describe("realized_vol_1s_60")["meaning"].startswith("realized volatility of 1-second")
    # a new window of a known family is described without a new entry
    assert "900 s" in describe("realized_vol_900")["meaning"]
    assert describe("vol_ratio_15_900")["unit"] == "ratio"
    assert describe("mystery") is None
    assert catalog(["mystery"])[0]["meaning"] == "(undocumented)"
