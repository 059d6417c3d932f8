"""The typed decoders of exchange messages and ``ticks.raw`` records are a shortcut only: text
they take gives what the generic path gives for the same JSON, and text they do not take falls
back to it, so every message is accepted or refused alike, with the same reason. The same holds
for a raw record's tick read in one pass (:func:`tick_from_bytes`), down to the sign of a zero,
and for the scorer's feature records."""

from __future__ import annotations

import dataclasses
import json
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.core.messages import MessageError, RawTick, parse_envelope, tick_from_bytes, to_tick
from tasks.core.predictions import FeatureRecordError, _parse_generic, parse_feature_record

TICKER = {"type": "ticker", "product_id": "BTC-USD", "price": "89565", "best_bid": "89574.23"}
ENVELOPE = {
    "channel": "ticker",
    "timestamp": "2025-12-06T05:45:36.037320Z",
    "sequence_num": 7,
    "events": [{"type": "update", "tickers": [TICKER]}],
}
RECORD = {
    "schema_version": 1,
    "product_id": "BTC-USD",
    "timestamp": "2025-12-06T05:45:36.037320Z",
    "sequence_num": 7,
    "received_at": "2025-12-06T05:45:36.100000Z",
    "source": "ws-1",
    "event_type": "update",
    "index": 0,
    "ticker": TICKER,
    "clock_offset_s": 0.25,
}

# values a field may hold instead: other types, numbers as text, the edges of the ranges
NUMBERS = [-2, -1, 0, 1, 2, 1.0, 2**53 - 1, 2**53, 2**63, 2**64, -(2**63) - 1, True, math.nan]
TEXTS = ["ticker", "error", "heartbeats", "7", "1.5", "", "\ud800", "BTC-USD", "../x"]
edges = st.sampled_from([*NUMBERS, None, *TEXTS])
scalars = st.one_of(
    edges,
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def mutated(base: dict, names: list[str]) -> st.SearchStrategy[dict]:
    """``base`` with some fields replaced by any value or removed."""
    replacement = st.one_of(st.just(...), edges, values)
    changes = st.dictionaries(st.sampled_from(names), replacement, max_size=3)

    def apply(change: dict) -> dict:
        out = dict(base)
        for name, value in change.items():
            if value is ...:
                out.pop(name, None)
            else:
                out[name] = value
        return out

    return changes.map(apply)


def outcome(decode, data) -> str:
    try:
        return "ok " + repr(decode(data))
    except MessageError as exc:
        return "refused " + str(exc)


def as_text(message: dict) -> str:
    return json.dumps(message)  # NaN and infinities as the literals Python's json writes


@settings(max_examples=400, deadline=None)
@given(mutated(ENVELOPE, [*ENVELOPE, "type"]))
@example({**ENVELOPE, "type": "error"})
@example({**ENVELOPE, "sequence_num": 2**53})
@example({**ENVELOPE, "sequence_num": -2})
def test_an_exchange_message_decodes_alike_from_text_and_from_its_json(message):
    text = as_text(message)
    generic = outcome(parse_envelope, json.loads(text))
    assert outcome(parse_envelope, text) == generic
    assert outcome(parse_envelope, text.encode("utf-8", "surrogatepass")) == generic


@settings(max_examples=400, deadline=None)
@given(mutated(RECORD, list(RECORD)))
@example({**RECORD, "sequence_num": 2**53})
@example({**RECORD, "schema_version": 2})
@example({**RECORD, "clock_offset_s": math.nan})
def test_a_raw_record_decodes_alike_from_text_and_from_its_json(record):
    text = as_text(record)
    assert outcome(RawTick.from_bytes, text) == outcome(RawTick.from_record, json.loads(text))


FULL_TICKER = {
    **TICKER,
    "best_ask": "89574.25",
    "best_bid_quantity": "0.15432901",
    "best_ask_quantity": "0.28456466",
    "volume_24_h": "8072.84769876",
}
NUMBER_FIELDS = ["price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity"]
# numbers as the exchange writes them and text that only looks like one
number_texts = st.one_of(
    st.sampled_from(
        [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1e12",
            "1e-12",
            "1E5",
            "5.",
            ".5",
            " 1",
            "1_0",
            "null",
            "nan",
            "Infinity",
            "0x10",
            "+1",
            "1e18",
            "1e-400",
            "1e400",
            "",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.from_regex(r"-?[0-9]{1,19}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
)
ticker_values = st.one_of(st.just(...), number_texts, edges, values)


def mutated_ticker(base: dict) -> st.SearchStrategy[dict]:
    changes = st.dictionaries(
        st.sampled_from([*NUMBER_FIELDS, "volume_24_h"]), ticker_values, max_size=3
    )

    def apply(change: dict) -> dict:
        ticker = dict(base)
        for name, value in change.items():
            if value is ...:
                ticker.pop(name, None)
            else:
                ticker[name] = value
        return ticker

    return changes.map(apply)


def generic_tick(data):
    return to_tick(RawTick.from_bytes(data))


@settings(max_examples=600, deadline=None)
@given(mutated(RECORD, list(RECORD)), mutated_ticker(FULL_TICKER))
@example({**RECORD, "ticker": []}, FULL_TICKER)
@example(RECORD, {**FULL_TICKER, "best_bid_quantity": "-0"})
@example(RECORD, {**FULL_TICKER, "volume_24_h": "null"})
@example(RECORD, {**FULL_TICKER, "best_bid": "89574.26"})
@example({**RECORD, "received_at": "2025-12-06T05:40:36.037320Z"}, FULL_TICKER)
def test_a_raw_records_tick_reads_alike_in_one_pass_and_through_the_raw_tick(record, ticker):
    if "ticker" in record and record["ticker"] is TICKER:
        record = {**record, "ticker": ticker}
    text = as_text(record)
    assert outcome(tick_from_bytes, text) == outcome(generic_tick, text)
    assert outcome(tick_from_bytes, text.encode("utf-8", "surrogatepass")) == outcome(
        generic_tick, text.encode("utf-8", "surrogatepass")
    )


FEATURE_RECORD = {
    "schema_version": 1,
    "feature_set_version": "fs2",
    "product_id": "BTC-USD",
    "ts": "2025-12-06T05:45:36.037320Z",
    "event_ts": 1764999936.03732,
    "record_id": "BTC-USD|ws-1|7|0",
    "features": {"ret_mean": 0.05, "ret_std": 0.01, "n": 50, "spread_bps": None},
}
feature_values = st.one_of(
    edges,
    values,
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=600, deadline=None)
@given(
    mutated(FEATURE_RECORD, list(FEATURE_RECORD)),
    st.dictionaries(st.sampled_from(["ret_mean", "n", "x"]), feature_values, max_size=3),
)
@example({**FEATURE_RECORD, "schema_version": True}, {})
@example(FEATURE_RECORD, {"n": 10**400})
@example(FEATURE_RECORD, {"n": 2**1023 * 2 - 1})
@example({**FEATURE_RECORD, "record_id": ""}, {})
def test_a_feature_record_reads_alike_typed_and_generic(record, changes):
    if isinstance(record.get("features"), dict):
        record = {**record, "features": {**record["features"], **changes}}
    text = as_text(record).encode("utf-8", "surrogatepass")
    assert read(parse_feature_record, text) == read(_parse_generic, text)


def read(parse, data):
    """The record, its feature values as the model reads them (floats: the typed decoder makes
    an integer a float at once, the generic path keeps it), or the refusal."""
    try:
        record = parse(data)
    except FeatureRecordError as exc:
        return "refused " + str(exc)
    values = {k: v if v is None else float(v) for k, v in record.features.items()}
    return dataclasses.replace(record, features=values)
