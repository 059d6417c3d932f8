"""The featurizer's feature records: msgspec writes them, read back they equal ``to_record``."""

from __future__ import annotations

import json
import math

import pytest

from tasks.core.features import FEATURE_NAMES, FeatureRow
from tasks.services.featurizer import feature_payload


def row(values: list[float]) -> FeatureRow:
    return FeatureRow("BTC-USD", 1764966782.579026, "BTC-USD|f.ndjson.gz|7|0", tuple(values))


def test_read_back_equals_the_record_bit_for_bit():
    # tiny, huge, negative, subnormal and missing values: floats must survive exactly
    values = [(-1) ** i * 1.117717129884511e-06 * 10.0 ** (i * 7 - 60) for i in range(20)]
    values += [5e-324, 0.1 + 0.2, math.nan, -0.0]
    values = (values * 3)[: len(FEATURE_NAMES)]
    r = row(values)
    read = json.loads(feature_payload(r))
    assert read == json.loads(json.dumps(r.to_record(), allow_nan=False))
    for name, v in zip(FEATURE_NAMES, values, strict=True):
        got = read["features"][name]
        assert got is None if math.isnan(v) else got.hex() == v.hex()


def test_an_infinite_feature_is_an_error_naming_it():
    values = [1.0] * len(FEATURE_NAMES)
    values[3] = -math.inf
    with pytest.raises(ValueError, match=FEATURE_NAMES[3]):
        feature_payload(row(values))
