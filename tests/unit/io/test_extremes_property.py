"""Valid-looking extremes: each is refused alone, counted with its reason, and changes nothing else.

Issue 15: random bytes found the parsers' crashes, but records that follow the schema with one
value at an edge went through: a sequence number of 2^63 or 10^15, a book at 1e308 or 1e-320, a
product id of ``..`` or 10 KB, a ``+05:00`` timestamp. Here Hypothesis puts one such value into
an otherwise clean stream and runs it through every reader: a recording (the backfill's reader and
the engine), the raw contract's frame, the featurizer's record handler (``ticks.raw``), and the
scorer's feature-record parse. Each run is compared with the clean stream's run: the extreme costs
one counted line, tick or dead letter that names its field, and every other output is the same.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_readers_property import _Message

from data_contracts.frames import read_raw_batch
from tasks.core.features import FEATURE_NAMES, FeatureEngine
from tasks.core.messages import (
    MAX_PRICE,
    MAX_PRODUCT_ID_LEN,
    MAX_SEQUENCE_NUM,
    MAX_SIZE,
    MIN_PRICE,
    RawTick,
    parse_envelope,
    ticks_from_envelope,
    to_tick,
)
from tasks.core.predictions import FeatureRecordError, parse_feature_record
from tasks.core.timeutil import format_ts
from tasks.services.featurizer import FeaturizeMetrics, FeaturizeStats, RecordHandler
from tasks.settings import Settings
from tasks.stages.backfill import BackfillStats, load_ticks

EXTREMES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
N = 24  # clean ticks; sequence numbers 0, 2, 4, ... so an extreme line fits between two


def clean_envelopes() -> list[dict]:
    envelopes, mid = [], 90_000.0
    for i in range(N):
        mid = round(mid * (1.0 + 1e-4 * math.sin(i)), 2)
        ticker = {
            "type": "ticker",
            "product_id": "BTC-USD",
            "price": f"{mid:.2f}",
            "volume_24_h": "8103.26",
            "best_bid": f"{mid - 0.01:.2f}",
            "best_ask": f"{mid + 0.01:.2f}",
            "best_bid_quantity": f"{0.1 + 0.01 * i:.2f}",
            "best_ask_quantity": "0.25",
        }
        envelopes.append(
            {
                "channel": "ticker",
                "client_id": "",
                "timestamp": format_ts(T0 + 0.5 * i),
                "sequence_num": 2 * i,
                "events": [{"type": "update", "tickers": [ticker]}],
            }
        )
    return envelopes


# -- the extremes: each a (what it breaks, the field it must be refused for, how to apply it)


def text_forms(x: float) -> st.SearchStrategy:
    """A number as the exchange would write it (a string, short or with every digit), or as a
    bare JSON number."""
    forms = [repr(x)]
    if math.isfinite(x):
        forms += [np.format_float_positional(x), f"{x:.30e}"]
    return st.sampled_from(forms) | (st.just(x) if math.isfinite(x) else st.nothing())


below_price = st.floats(max_value=math.nextafter(MIN_PRICE, 0.0), allow_nan=False)
above_price = st.floats(min_value=math.nextafter(MAX_PRICE, math.inf), allow_nan=False)
bad_prices = (below_price | above_price | st.just(math.nan)).flatmap(text_forms)
bad_sizes = (
    st.floats(max_value=-5e-324, allow_nan=False)
    | st.floats(min_value=math.nextafter(MAX_SIZE, math.inf), allow_nan=False)
    | st.just(math.nan)
).flatmap(text_forms)
not_in_ids = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: not ("A" <= c <= "Z" or "0" <= c <= "9" or c == "-")
)
bad_product_ids = st.one_of(
    st.sampled_from(["", ".", "..", "../../etc", "BTC", "BTC--USD", "-BTC-USD", "BTC-USD-"]),
    st.builds(
        lambda a, c, b: f"BTC{a}{c}{b}-USD", st.text(max_size=4), not_in_ids, st.text(max_size=4)
    ),
    st.integers(MAX_PRODUCT_ID_LEN - 3, 12_000).map(lambda n: "BTC-" + "X" * n),
)
bad_sequences = st.one_of(
    st.integers(min_value=MAX_SEQUENCE_NUM + 1, max_value=10**400),
    st.integers(max_value=-2, min_value=-(10**30)),
    st.sampled_from([1.5, True, "1e3", "", None]),
)
offsets = st.tuples(st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)).filter(
    lambda o: o != ("+", 0, 0)
)


@dataclass(frozen=True)
class Extreme:
    """One value at an edge: where it goes, the field it must be refused for, and what counts
    it (a bad ``line``, a refused ``tick`` or a sequence ``jump``)."""

    counted_as: str
    where: str  # "ticker", "envelope", or "offset" (a UTC timestamp rewritten with an offset)
    field: str
    value: object

    def apply(self, envelope: dict) -> None:
        if self.where == "ticker":
            envelope["events"][0]["tickers"][0][self.field] = self.value
        elif self.where == "envelope":
            envelope[self.field] = self.value
        else:
            envelope["timestamp"] = envelope["timestamp"][:-1] + self.value


def offset_text(offset: tuple[str, int, int]) -> str:
    sign, hours, minutes = offset
    return f"{sign}{hours:02d}:{minutes:02d}"


PRICES = ["price", "best_bid", "best_ask"]
SIZES = ["best_bid_quantity", "best_ask_quantity", "volume_24_h"]
extremes = st.one_of(
    st.builds(Extreme, st.just("tick"), st.just("ticker"), st.sampled_from(PRICES), bad_prices),
    st.builds(Extreme, st.just("tick"), st.just("ticker"), st.sampled_from(SIZES), bad_sizes),
    st.builds(Extreme, st.just("line"), st.just("ticker"), st.just("product_id"), bad_product_ids),
    st.builds(
        Extreme, st.just("line"), st.just("envelope"), st.just("sequence_num"), bad_sequences
    ),
    st.builds(
        Extreme,
        st.just("jump"),
        st.just("envelope"),
        st.just("sequence_num"),
        st.integers(10**9, MAX_SEQUENCE_NUM),
    ),
    st.builds(
        Extreme, st.just("tick"), st.just("offset"), st.just("timestamp"), offsets.map(offset_text)
    ),
)
positions = st.integers(1, N - 2)  # the extreme goes before clean line `at`


def poisoned(at: int, extreme: Extreme) -> tuple[list[dict], list[dict]]:
    """The clean envelopes, and the same with one extreme line before line ``at``: a copy of
    line ``at - 1`` (same time, the odd sequence number between its neighbours), then changed."""
    clean = clean_envelopes()
    line = json.loads(json.dumps(clean[at - 1]))
    line["sequence_num"] = 2 * at - 1
    line["events"][0]["tickers"][0]["price"] = "91000.00"  # a row of its own if taken
    extreme.apply(line)
    return clean, [*clean[:at], line, *clean[at:]]


def write(folder: Path, envelopes: list[dict]) -> Path:
    folder.mkdir()
    path = folder / "BTC-USD_x.ndjson"  # one name: record ids (and sources) agree across runs
    path.write_text("".join(json.dumps(e, allow_nan=True) + "\n" for e in envelopes))
    return path


def rows_of(ticks) -> tuple[list, FeatureEngine]:
    engine = FeatureEngine()
    rows = [engine.process(t) for t in ticks]
    return [(r.record_id, r.ts, r.values) for r in rows if r is not None], engine


def same(a: list, b: list) -> bool:
    """Rows equal bit for bit (NaN equals NaN)."""
    return len(a) == len(b) and all(
        x[:2] == y[:2] and np.array_equal(x[2], y[2], equal_nan=True)
        for x, y in zip(a, b, strict=True)
    )


@EXTREMES
@given(extreme=extremes, at=positions)
def test_an_extreme_in_a_recording_costs_one_counted_line_or_tick(extreme, at):
    kind, field = extreme.counted_as, extreme.field
    clean, bad = poisoned(at, extreme)
    with tempfile.TemporaryDirectory() as folder:
        clean_path, bad_path = (
            write(Path(folder) / "clean", clean),
            write(Path(folder) / "bad", bad),
        )
        clean_stats, bad_stats = BackfillStats(), BackfillStats()
        clean_rows, clean_engine = rows_of(load_ticks([clean_path], clean_stats))
        bad_rows, bad_engine = rows_of(load_ticks([bad_path], bad_stats))
        assert same(bad_rows, clean_rows)  # every other tick's features, bit for bit
        counted = {
            "line": bad_stats.bad_lines - clean_stats.bad_lines,
            "tick": bad_stats.rejected - clean_stats.rejected,
            "jump": bad_engine.stats.sequence_jumps - clean_engine.stats.sequence_jumps,
        }
        assert counted == {k: int(k == kind) for k in counted}
        reasons = bad_stats.first_bad_lines + bad_stats.first_rejects
        if kind != "jump":
            (reason,) = reasons
            assert field in reason

        clean_batch, bad_batch = read_raw_batch([clean_path]), read_raw_batch([bad_path])
        frame = bad_batch.frame
        if kind == "jump":  # no tick rule can see a jump: the contract's sequence check does
            assert (frame["seq_delta"] < 0).sum() == 1 and frame["refused"].isna().all()
        else:  # a counted bad line, or the one row the parse step refuses, naming the field
            refused = frame["refused"].notna()
            assert len(bad_batch.bad_lines) + refused.sum() == len(clean_batch.bad_lines) + 1
            assert all(field in reason for reason in frame.loc[refused, "refused"])
            frame = frame[~refused]
        columns = [c for c in frame.columns if c != "seq_delta"]  # it sees the line before
        kept = frame[frame["record_id"].isin(clean_batch.frame["record_id"])][columns]
        assert kept.reset_index(drop=True).equals(clean_batch.frame[columns])


def raw_records(envelopes: list[dict]) -> list[bytes]:
    """The ``ticks.raw`` records capture publishes for these envelopes (one per envelope; a
    ticker the envelope parse refuses is published as it is, the featurizer must refuse it)."""
    records = []
    for envelope in envelopes:
        ticker = envelope["events"][0]["tickers"][0]
        record = RawTick(
            product_id=ticker["product_id"],
            timestamp=envelope["timestamp"],
            sequence_num=2 * N,  # replaced below, as sent
            received_at=envelope["timestamp"][:26] + "Z",
            source="conn-1",
            event_type="update",
            index=0,
            ticker=ticker,
        ).to_record()
        record["sequence_num"] = envelope["sequence_num"]
        records.append(json.dumps(record, allow_nan=True).encode())
    return records


def featurize(values: list[bytes]) -> tuple[list, list, FeaturizeStats]:
    stats = FeaturizeStats()
    handler = RecordHandler(Settings(), "g", stats, FeaturizeMetrics())
    engine = FeatureEngine()
    outs: list = []
    for value in values:
        handler.process(_Message(value), engine, time.monotonic(), outs)
    features = [o.value for o in outs if o.kind == "feature"]
    dead = [o for o in outs if o.kind == "dlq"]
    return features, dead, stats


@EXTREMES
@given(extreme=extremes, at=positions)
def test_an_extreme_on_ticks_raw_is_one_dead_letter_naming_its_field(extreme, at):
    field = extreme.field
    clean, bad = poisoned(at, extreme)
    clean_features, clean_dead, _ = featurize(raw_records(clean))
    bad_values = raw_records(bad)
    features, dead, stats = featurize(bad_values)
    assert features == clean_features and clean_dead == []
    (letter,) = dead
    assert letter.value == bad_values[at]
    assert field in dict(letter.headers)["error"].decode()
    assert stats.duplicates == stats.late_dropped == 0
    # the featurizer and the scorer agree: every feature record it makes, the scorer takes
    assert [parse_feature_record(v).record_id for v in features] == [
        json.loads(v)["record_id"] for v in features
    ]


def clean_feature_records() -> list[dict]:
    envelopes = clean_envelopes()
    engine = FeatureEngine()
    records = []
    for envelope in envelopes:
        (raw,) = ticks_from_envelope(
            parse_envelope(envelope), received_at=envelope["timestamp"], source="c"
        )
        row = engine.process(to_tick(raw))
        records.append(row.to_record())
    return records


def _deep(depth: int) -> dict:
    value: object = 1.0
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class FeatureExtreme:
    """One value at an edge in a feature record: a top-level field, a feature's value, or a
    feature written as JSON number text no float holds (``1e400``, 400 digits)."""

    where: str  # "record", "feature" or "number text"
    field: str
    value: object

    def apply(self, record: dict) -> None:
        if self.where == "record":
            record[self.field] = self.value
        elif self.where == "feature":
            record["features"][self.field] = self.value
        else:
            record["features"][self.field] = f"@@{self.value}@@"  # unquoted by encode()

    @property
    def named(self) -> str:
        return self.field if self.where == "record" else "features"


feature_extremes = st.one_of(
    st.builds(FeatureExtreme, st.just("record"), st.just("product_id"), bad_product_ids),
    st.builds(
        FeatureExtreme,
        st.just("record"),
        st.just("ts"),
        offsets.map(lambda o: "2026-01-01T00:00:01.000000" + offset_text(o)),
    ),
    st.builds(
        FeatureExtreme,
        st.just("feature"),
        st.sampled_from(FEATURE_NAMES),
        st.sampled_from([math.inf, -math.inf, math.nan]) | st.integers(1, 500).map(_deep),
    ),
    st.builds(
        FeatureExtreme,
        st.just("number text"),
        st.sampled_from(FEATURE_NAMES),
        st.sampled_from(["1e400", "-1e400", "9" * 400, "-" + "9" * 400]),
    ),
)


def encode(record: dict) -> bytes:
    text = json.dumps(record, allow_nan=True)
    for quoted in ('"@@', '@@"'):  # unquote the raw number texts of _feature_text
        text = text.replace(quoted, "")
    return text.encode()


@EXTREMES
@given(extreme=feature_extremes, at=st.integers(0, N - 1))
def test_an_extreme_feature_record_is_refused_naming_its_field(extreme, at):
    records = clean_feature_records()
    clean = [parse_feature_record(encode(r)) for r in records]
    extreme.apply(records[at])
    for i, record in enumerate(records):
        if i == at:
            with pytest.raises(FeatureRecordError) as refused:
                parse_feature_record(encode(record))
            assert extreme.named in str(refused.value)
        else:
            assert parse_feature_record(encode(record)) == clean[i]


def test_a_feature_record_nested_too_deeply_to_parse_is_refused():
    """Issue 15, item 8: nesting 100k deep raised RecursionError out of the parse step."""
    value = b'{"schema_version": 1, "features": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001
    with pytest.raises(FeatureRecordError, match="nested too deeply"):
        parse_feature_record(value)
