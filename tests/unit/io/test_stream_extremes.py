"""The stream side of issue 15: one extreme ``ticks.raw`` record costs one dead letter.

Before, a sequence number of 10^15 made the following ticks of its product duplicates (dropped
in silence), a book at 1e308 left an infinite mid in the window sums (every later tick of the
product was an engine error for 300 s), and an empty product id passed the featurizer, whose
feature record the scorer then refused.
"""

from __future__ import annotations

import json
import time

import pytest
from test_readers_property import _Message

from tasks.core.features import FeatureEngine
from tasks.core.predictions import parse_feature_record
from tasks.core.timeutil import format_ts
from tasks.services.featurizer import FeaturizeMetrics, FeaturizeStats, RecordHandler
from tasks.settings import Settings

T0 = 1_767_225_600.0


def raw(i: int, *, product: str = "BTC-USD", seq: int | None = None, **ticker) -> bytes:
    stamp = format_ts(T0 + 0.5 * i)
    mid = 90_000.0 + i
    fields = {
        "product_id": product,
        "price": f"{mid:.2f}",
        "best_bid": f"{mid - 0.01:.2f}",
        "best_ask": f"{mid + 0.01:.2f}",
        **ticker,
    }
    record = {
        "schema_version": 1,
        "product_id": product,
        "timestamp": stamp,
        "sequence_num": 2 * i if seq is None else seq,
        "received_at": stamp,
        "source": "conn-1",
        "event_type": "update",
        "index": 0,
        "ticker": fields,
    }
    return json.dumps(record).encode()


def run(values: list[bytes]) -> tuple[list, list, FeaturizeStats]:
    stats = FeaturizeStats()
    handler = RecordHandler(Settings(), "g", stats, FeaturizeMetrics())
    engine = FeatureEngine()
    outs: list = []
    for value in values:
        handler.process(_Message(value), engine, time.monotonic(), outs)
    return [o for o in outs if o.kind == "feature"], [o for o in outs if o.kind == "dlq"], stats


EXTREMES = {
    "sequence 10^15": (raw(5, seq=10**15), "sequence_num"),
    "book 1e308": (raw(5, seq=9, best_bid="1e308", best_ask="1e308"), "best_bid"),
    "book 1e-320": (raw(5, seq=9, best_bid="1e-320", best_ask="1e-320"), "best_bid"),
    "empty product id": (raw(5, seq=9, product=""), "product_id"),
    "product id ..": (raw(5, seq=9, product=".."), "product_id"),
    "product id of 10 KB": (raw(5, seq=9, product="X" * 10_000), "product_id"),
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_one_extreme_raw_record_is_one_dead_letter(name):
    extreme, field = EXTREMES[name]
    clean = [raw(i) for i in range(40)]
    clean_features, _, _ = run(clean)
    features, dead, stats = run([*clean[:5], extreme, *clean[5:]])
    assert [f.value for f in features] == [f.value for f in clean_features]
    (letter,) = dead
    assert letter.value == extreme and field in dict(letter.headers)["error"].decode()
    assert stats.duplicates == stats.late_dropped == stats.errors == 0
    # what the featurizer makes, the scorer takes
    assert all(parse_feature_record(f.value).product_id == "BTC-USD" for f in features)
