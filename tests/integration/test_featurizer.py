"""The featurizer in-process against a real broker: dead letters, metrics, the crash window."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections import Counter

import pytest
from featurize_support import (
    batch_rows,
    compare_with_batch,
    feature_records,
    mismatches,
    produce,
    raw_ticks,
    read_topic,
    stream_values,
    tick_records,
    write_recording,
)
from prometheus_client.parser import text_string_to_metric_families

from tasks.io.broker import free_port
from tasks.services.featurizer import Featurizer, run_featurizer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _raw(**changes) -> bytes:
    record = {
        "schema_version": 1,
        "product_id": "BTC-USD",
        "timestamp": "2026-01-01T00:00:01.000000Z",
        "sequence_num": 1,
        "received_at": "2026-01-01T00:00:01.000000Z",
        "source": "bad.ndjson",
        "event_type": "update",
        "index": 0,
        "ticker": {"product_id": "BTC-USD", "price": "100", "best_bid": "99", "best_ask": "101"},
    }
    for name, value in changes.items():
        if name == "ticker":
            record["ticker"] = {**record["ticker"], **value}
        elif value is None:
            del record[name]
        else:
            record[name] = value
    return json.dumps(record).encode()


# (value, the error it must carry on the dead-letter topic)
MALFORMED = [
    (b"not json {", "not JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (None, "empty record"),
    (_raw(ticker={"price": "-5"}), "'price' is out of range"),
    (_raw(ticker={"best_bid": "102"}), "crossed book"),
    (_raw(timestamp=None), "missing 'timestamp'"),
    (_raw(ticker={"price": None}), "'price' is missing"),
    (_raw(schema_version=99), "unsupported schema_version"),
    (_raw(timestamp="yesterday"), "timestamp"),
    (_raw(ticker={"best_ask": "NaN"}), "not finite"),
    # poison: before, these raised out of the loop (a crash on every restart)
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (_raw(ticker={"price": {"nested": [1e400]}}), "'price' is not a number"),
    (_raw(product_id=5), "'product_id' is not a string"),
    (_raw(timestamp="2027-01-01T00:00:01.000000Z"), "event time"),  # a year after receipt
]
DEEP = b'{"schema_version":1,"ticker":' + b"[" * 50_000 + b"]" * 50_000 + b"}"


def metric_values(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
    return values


def test_malformed_records_go_to_the_dlq_and_the_stream_goes_on(kafka_settings, tmp_path):
    settings = kafka_settings
    recording = write_recording(tmp_path / "sim.ndjson.gz", ticks=1200, seconds=600, seed=3)
    good = tick_records(raw_ticks([recording]))
    stream = list(good)
    for i, (value, _error) in enumerate(MALFORMED):  # spread among the good ones
        stream.insert((i + 1) * len(good) // (len(MALFORMED) + 1), (b"BTC-USD", value))
    produce(settings, stream)

    port = free_port()
    stop = threading.Event()
    result = {}
    runner = threading.Thread(
        target=lambda: result.update(
            stats=run_featurizer(settings, f"g-{uuid.uuid4().hex[:8]}", stop, metrics_port=port)
        )
    )
    runner.start()
    try:
        out = feature_records(
            read_topic(
                settings, settings.features_topic, done=lambda m: len(m) >= len(good), quiet_s=30
            )
        )
        dead = read_topic(
            settings, settings.dlq_topic, done=lambda m: len(m) >= len(MALFORMED), quiet_s=5
        )
        metrics = metric_values(port)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    stats = result["stats"]

    assert compare_with_batch(batch_rows([recording]), out) == []  # every good tick, exact
    assert len(dead) == len(MALFORMED)
    expected = {value: error for value, error in MALFORMED}
    for msg in dead:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert expected[msg.value()] in headers["error"], headers
        assert headers["source_topic"] == settings.raw_topic
        assert int(headers["source_offset"]) >= 0
        assert msg.key() == b"BTC-USD"
    assert stats.ticks_in == len(stream)
    assert stats.dlq == len(MALFORMED)
    assert stats.features_out == len(good)
    assert metrics["cryptovol_featurize_ticks_in_total"] == len(stream)
    assert metrics["cryptovol_featurize_dlq_total"] == len(MALFORMED)
    assert metrics["cryptovol_featurize_features_out_total"] == len(good)
    assert metrics["cryptovol_featurize_latency_seconds_count"] == len(good)


class Crash(Exception):
    pass


@pytest.mark.slow
def test_a_crash_between_acknowledgement_and_commit_repeats_the_batch_with_the_same_ids(
    kafka_settings, tmp_path
):
    settings = kafka_settings
    # No gap: a window restart inside the warm-up would make the restart exact by itself.
    recording = write_recording(
        tmp_path / "sim.ndjson.gz", ticks=6000, seconds=900, seed=9, gap_at=None
    )
    produce(settings, tick_records(raw_ticks([recording])))
    group = f"g-{uuid.uuid4().hex[:8]}"

    featurizer = Featurizer(settings, group, batch_size=100)
    commit = featurizer.loop._commit

    def commit_then_crash(offsets, asynchronous=False):
        if featurizer.stats.features_out >= 5000:  # these batches are out and acknowledged
            raise Crash
        commit(offsets, asynchronous)

    featurizer.loop._commit = commit_then_crash
    with pytest.raises(Crash):
        featurizer.run(max_idle_s=5)
    featurizer.loop._commit = lambda *_: None  # dead: it commits nothing more
    featurizer.loop.consumer.close()  # leave the group at once; offsets stay as committed
    # the batches still out when it crashed reach the broker too
    featurizer.loop.delivery.producer.flush(30)
    first = len(read_topic(settings, settings.features_topic))

    # A short first warm-up guess: it rewinds until it spans the engine's look-back (935 s),
    # and re-reads from the middle of the partitions.
    stats = run_featurizer(settings, group, max_idle_s=3, warmup_records=400)
    assert stats.rewinds > 0
    assert 0 < stats.warmup_ticks < first
    out = feature_records(read_topic(settings, settings.features_topic))
    batch = batch_rows([recording])
    assert compare_with_batch(batch, out) == []  # bit-identical after the warm-up
    copies = Counter(r["record_id"] for r in out)
    repeated = {rid for rid, n in copies.items() if n > 1}
    assert len(out) == first + stats.features_out
    assert len(repeated) == len(out) - len(batch) > 0  # the uncommitted batch, once more
    values = {}
    for record in out:
        got = stream_values(record)
        if record["record_id"] in values:
            previous = values[record["record_id"]]
            assert mismatches(previous, got) == []  # the repeated batch, bit for bit
        values[record["record_id"]] = got


@pytest.mark.slow
def test_a_second_featurizer_joining_mid_stream_takes_over_partitions_warm(
    kafka_settings, tmp_path
):
    settings = kafka_settings
    recording = write_recording(
        tmp_path / "sim.ndjson.gz", ticks=4000, seconds=1500, seed=13, gap_at=None
    )
    records = tick_records(raw_ticks([recording]))
    batch = batch_rows([recording])
    group = f"g-{uuid.uuid4().hex[:8]}"
    third = len(records) // 3
    produce(settings, records[:third])

    results: dict[str, object] = {}

    def run(name: str) -> None:
        results[name] = run_featurizer(
            settings, group, max_idle_s=4, batch_size=50, warmup_records=150
        )

    first = threading.Thread(target=run, args=("first",))
    first.start()
    read_topic(settings, settings.features_topic, done=lambda m: len(m) >= third, quiet_s=30)
    rest = threading.Thread(
        target=produce, args=(settings, records[third:]), kwargs={"rate_per_s": 300}
    )
    rest.start()
    second = threading.Thread(target=run, args=("second",))
    second.start()
    for thread in (rest, first, second):
        thread.join(120)
        assert not thread.is_alive()

    # The rebalance revoked the first one's partitions: it re-read their history before going on.
    # The two products' keys hash to partitions 0 and 2, which the range assignor splits.
    assert results["first"].warmup_ticks > 0
    assert results["first"].rewinds + results["second"].rewinds > 0  # warm-ups from mid-stream
    assert results["second"].features_out > 0
    out = feature_records(read_topic(settings, settings.features_topic))  # all, until quiet
    assert compare_with_batch(batch, out) == []  # both featurizers, bit-identical


def test_a_poison_record_is_dead_lettered_and_committed_not_a_crash_loop(kafka_settings, tmp_path):
    settings = kafka_settings
    recording = write_recording(tmp_path / "sim.ndjson.gz", ticks=600, seconds=300, seed=4)
    good = tick_records(raw_ticks([recording]))
    produce(settings, [*good[:300], (b"BTC-USD", DEEP), *good[300:]])
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = run_featurizer(settings, group, max_idle_s=3, metrics_port=0)
    assert first.dlq == 1 and first.features_out == len(good)
    again = run_featurizer(settings, group, max_idle_s=3, metrics_port=0)  # a restart
    assert again.dlq == 0 and again.features_out == 0 and again.ticks_in == 0
    (dead,) = read_topic(settings, settings.dlq_topic, quiet_s=1)
    assert dead.value() == DEEP
    assert "nested too deeply" in dict(dead.headers())["error"].decode()
