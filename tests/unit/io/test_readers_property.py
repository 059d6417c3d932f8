"""Every reader of outside input takes anything: no exception escapes, every bad input is counted.

Issue 9, case 3: a deeply nested JSON value raised a RecursionError in the parsers, so replay,
backfill and ``validate-data`` died with a traceback, capture died on such a message from the
exchange, and the featurizer crashed on every restart over one record on ``ticks.raw``. Here
Hypothesis feeds arbitrary JSON values (shaped like the real messages or not), arbitrary bytes
and very deep nesting to the three kinds of reader:

- recordings (replay, backfill and the raw contract read them through :mod:`tasks.io.recordings`);
- ``ticks.raw`` records (the featurizer's :class:`~tasks.services.featurizer.TickHandler`);
- exchange messages (the client's ``_accept``, then capture's produce loop).
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_contracts.frames import read_raw_batch
from tasks.core.features import FeatureEngine
from tasks.io.archive import ArchiveWriter
from tasks.io.consumer_loop import dead_letter, rejection
from tasks.io.exchange_client import INVALID_CHANNEL, AdvancedTradeClient, _Session
from tasks.io.publisher import TickPublisher
from tasks.io.recordings import BadLine, RecordedEnvelope, read_envelopes, read_ticks
from tasks.services.capture import _Capture
from tasks.services.featurizer import FeaturizeMetrics, FeaturizeStats, TickHandler, _Partition
from tasks.settings import Settings
from tasks.stages.backfill import BackfillStats, load_ticks

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


def deep(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


deep_text = st.builds(
    deep, st.integers(1, 5000) | st.just(100_000), st.sampled_from(["list", "dict"])
)
timestamps = st.sampled_from(
    ["2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:02Z", "2099-01-01T00:00:00Z", "yesterday"]
) | st.text(max_size=30)
ticker_like = st.fixed_dictionaries(
    {"product_id": st.sampled_from(["BTC-USD", "ETH-USD"]) | json_values},
    optional={
        name: st.sampled_from(["100.5", "99", "-1", "nan", "1e400", ""]) | json_values
        for name in ("price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")
    },
)
envelope_like = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(["ticker", "heartbeats", "subscriptions"]) | json_values,
        "timestamp": timestamps | json_values,
        "sequence_num": st.integers(-5, 10**20) | json_values,
        "events": st.lists(
            st.fixed_dictionaries(
                {"type": json_values, "tickers": st.lists(ticker_like | json_values)}
            )
            | json_values,
            max_size=3,
        )
        | json_values,
    }
)
raw_record_like = st.fixed_dictionaries(
    {
        "schema_version": st.just(1) | json_values,
        "product_id": st.just("BTC-USD") | json_values,
        "timestamp": timestamps | json_values,
        "sequence_num": st.integers(-5, 10**20) | json_values,
        "received_at": timestamps | json_values,
        "source": st.just("s") | json_values,
        "event_type": st.just("update") | json_values,
        "ticker": ticker_like | json_values,
    },
    optional={"index": st.integers(-2, 5) | json_values, "clock_offset_s": json_values},
)


def as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


message_texts = st.one_of(
    envelope_like.map(as_text), json_values.map(as_text), deep_text, st.text(max_size=200)
)
line_bytes = st.one_of(
    message_texts.map(lambda text: text.encode("utf-8", "surrogatepass")), st.binary(max_size=300)
)


@PROPERTY
@given(
    lines=st.lists(line_bytes, max_size=12),
    how=st.sampled_from(["plain", "gzip", "corrupt gzip"]),
    cut=st.booleans(),
    noise=st.binary(max_size=40),
)
def test_recordings_readers_take_any_lines(lines, how, cut, noise):
    data = b"\n".join(lines) + (b"" if cut else b"\n")
    expected = [line for line in data.split(b"\n") if line.strip()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.ndjson"
        if how == "gzip":
            data = gzip.compress(data)
        elif how == "corrupt gzip":  # a gzip header, then whatever
            data = gzip.compress(data)[:10] + noise
        path.write_bytes(data)

        items = list(read_envelopes([path]))  # replay and backfill read through this
        assert all(isinstance(i, RecordedEnvelope | BadLine) for i in items)
        if how != "corrupt gzip":  # each line an envelope or a counted bad line
            assert len(items) == len(expected)
        for item in items:
            if isinstance(item, RecordedEnvelope):
                assert isinstance(item.received_at, str)
        ticks = list(read_ticks([path]))
        stats = BackfillStats()
        accepted = load_ticks([path], stats)  # the backfill's reader
        assert stats.ticks == len(ticks) - stats.bad_lines
        assert stats.ticks == len(accepted) + stats.rejected
        batch = read_raw_batch([path])  # the raw contract's reader
        assert len(batch.frame) == stats.ticks
        assert len(batch.bad_lines) + len(batch.truncated) == stats.bad_lines


class _Message:
    """What the featurizer reads from a consumed record."""

    def __init__(self, value: bytes | None) -> None:
        self._value = value

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return b"BTC-USD"

    def topic(self) -> str:
        return "ticks.raw"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


raw_values = st.one_of(
    raw_record_like.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    deep_text.map(str.encode),
    st.binary(max_size=300),
    st.none(),
)


@PROPERTY
@given(values=st.lists(raw_values, min_size=1, max_size=8))
def test_the_featurizer_takes_any_raw_record(values):
    stats = FeaturizeStats()
    handler = TickHandler(Settings(), stats, FeaturizeMetrics())
    handler.partitions[0] = _Partition(FeatureEngine(), resume_at=0, low=0, start=0, live=True)
    for value in values:
        msg = _Message(value)
        dropped = stats.duplicates + stats.late_dropped
        try:
            outs = handler.handle(msg, time.monotonic())
        except Exception as exc:  # what the consumer loop dead-letters, with this reason
            letter = dead_letter(msg, rejection(exc, handler.bad_input), "dlq", "featurizer", "g")
            assert dict(letter.headers)["error"] and letter.value == value
            assert stats.duplicates + stats.late_dropped == dropped
            continue
        # a feature record or a counted drop: exactly one
        assert len(outs) + (stats.duplicates + stats.late_dropped - dropped) == 1
        for out in outs:
            assert json.loads(out.value)["features"]


class _Producer:
    def __init__(self) -> None:
        self.produced = 0

    def produce(self, topic, value, key, on_delivery):
        self.produced += 1
        on_delivery(None, None)

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        return 0

    def __len__(self):
        return 0


@PROPERTY
@given(texts=st.lists(message_texts, min_size=1, max_size=8))
def test_capture_takes_any_exchange_message(texts):
    client = AdvancedTradeClient("ws://unused", ["BTC-USD"])
    session = _Session("run-1", time.monotonic())
    producer = _Producer()
    publisher = TickPublisher(producer, "ticks.raw")
    with tempfile.TemporaryDirectory() as folder, ArchiveWriter(Path(folder)) as archive:
        capture = _Capture(publisher, archive)
        for text in texts:
            received = client._accept(text, session)
            assert math.isfinite(received.clock_offset_s)
            capture.on_message(received)
        archive.close()  # a line counts once it reached the file
        stats = client.stats
        assert stats.messages == len(texts) == archive.stats.lines  # every message archived
        assert sum(stats.by_channel.values()) == len(texts)  # each a channel, or counted invalid
        invalid = sum(1 for text in texts if _not_an_envelope(text))
        assert stats.by_channel[INVALID_CHANNEL] == invalid
        assert producer.produced == sum(capture.by_product.values())


def _not_an_envelope(text: str) -> bool:
    from tasks.core.messages import MessageError, parse_envelope

    try:
        parse_envelope(text)
    except MessageError:
        return True
    return False
