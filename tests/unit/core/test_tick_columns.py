"""``tick_columns`` checks many raw ticks at once and must be ``to_tick`` of each, exactly.

Hypothesis draws ticker fields from what a feed or a corrupted file can carry (numbers as text
or as numbers, blanks, absent fields, NaN and infinity as text, huge integers, booleans, lists,
objects, crossed books) and raw ticks whose event time is still to parse, or lies far from its
receive time: every valid tick's values are bit for bit ``to_tick``'s, every refused one has
``to_tick``'s error, in order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core.messages import MessageError, RawTick, TickColumns, tick_columns, to_tick
from tasks.core.timeutil import format_ts

T0 = 1_767_225_600.0

field_values = st.one_of(
    st.sampled_from(["90000.01", "0.00000680", "1e-13", "1e13", "2e18", "-1", "-0", " 5 ", "1_0"]),
    st.sampled_from(["", "nan", "inf", "-inf", "0x10", "abc", "NaN"]),
    st.floats(min_value=1e-3, max_value=1e6).map(repr),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**400),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
NAMES = ("price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity", "volume_24_h")


def mostly(clean, *odd):
    """The clean value seven times in eight, else one of ``odd``."""
    return st.sampled_from([clean] * 7 * len(odd) + list(odd))


@st.composite
def raw_ticks(draw) -> RawTick:
    ticker = {}
    for name in NAMES:
        if draw(st.booleans()):  # mostly clean
            ticker[name] = {"best_ask": "90000.02", "best_bid": "90000.00"}.get(name, "1.5")
        elif draw(st.booleans()):
            ticker[name] = draw(field_values)
    ts = T0 + draw(st.floats(min_value=0, max_value=100))
    timestamp = format_ts(ts)
    return RawTick(
        product_id=draw(mostly("BTC-USD", "ETH-USD", "btc-usd", "../x")),
        timestamp=draw(mostly(timestamp, "not a time")),
        sequence_num=draw(st.integers(min_value=-1, max_value=10**6)),
        received_at=draw(mostly(timestamp, format_ts(ts - 400), format_ts(ts + 1), "")),
        source="file.ndjson",
        event_type="update",
        index=draw(st.integers(min_value=0, max_value=3)),
        ticker=draw(mostly(ticker, "not an object")),
        clock_offset_s=draw(mostly(0.0, 0.5, -100.0, 400.0)),
        event_time=draw(mostly(ts, math.nan)),
    )


def same_as_to_tick(raws: list[RawTick]) -> None:
    expected, errors = [], []
    for position, raw in enumerate(raws):
        try:
            expected.append(to_tick(raw))
        except MessageError as exc:
            errors.append((position, str(exc)))
    columns, refused = tick_columns(raws)
    assert [(position, str(exc)) for position, exc in refused] == errors
    got = columns.to_ticks()
    assert [t.record_id for t in got] == [t.record_id for t in expected]
    for name in ("ts", "price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity"):
        want = np.array([getattr(t, name) for t in expected], dtype=np.float64)
        assert getattr(columns, name).tobytes() == want.tobytes(), name
    want = np.array([t.volume_24h for t in expected], dtype=np.float64)
    assert columns.volume_24h.tobytes() == want.tobytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_ticks(), min_size=1, max_size=60))
def test_tick_columns_is_to_tick_of_each(raws):
    same_as_to_tick(raws)


def clean(**changes) -> RawTick:
    ticker = {"price": "90000.01", "best_bid": "90000.00", "best_ask": "90000.02"}
    ticker.update(changes.pop("ticker", {}))
    fields = {
        "product_id": "BTC-USD",
        "timestamp": format_ts(T0),
        "sequence_num": 7,
        "received_at": format_ts(T0),
        "source": "f",
        "event_type": "update",
        "index": 0,
        "ticker": ticker,
        "event_time": T0,
    }
    fields.update(changes)
    return RawTick(**fields)


ODD = {
    "received long before": clean(received_at=format_ts(T0 - 400)),
    "received long after": clean(received_at=format_ts(T0 + 400)),
    "received within bounds": clean(received_at=format_ts(T0 + 1)),
    "clock offset": clean(clock_offset_s=-100.0),
    "event time to parse": clean(event_time=math.nan),
    "timestamp unparseable": clean(event_time=math.nan, timestamp="soon"),
    "bad product id": clean(product_id="../x"),
    "crossed book": clean(ticker={"best_bid": "3", "best_ask": "2"}),
    "nan as text": clean(ticker={"best_bid_quantity": "nan"}),
    "blank quantity": clean(ticker={"best_bid_quantity": ""}),
    "blank price": clean(ticker={"price": ""}),
    "boolean price": clean(ticker={"price": True}),
    "integer price": clean(ticker={"price": 5}),
    "huge integer": clean(ticker={"volume_24_h": 10**400}),
    "list": clean(ticker={"best_ask_quantity": [1]}),
    "object": clean(ticker={"best_ask_quantity": {}}),
    "price above range": clean(ticker={"price": "1e13"}),
}
ODD["ticker not an object"] = RawTick("BTC-USD", format_ts(T0), 1, format_ts(T0), "f", "u", 0, [])


@pytest.mark.parametrize("name", ODD)
def test_each_odd_tick_is_judged_as_to_tick_judges_it(name):
    same_as_to_tick([clean(sequence_num=1), ODD[name], clean(sequence_num=9)])


def test_columns_round_trip_through_ticks():
    raws = [
        RawTick("BTC-USD", format_ts(T0 + i), i, format_ts(T0 + i), "f", "update", 0, ticker)
        for i, ticker in enumerate(
            [
                {"price": "1.5", "best_bid": "1.4", "best_ask": "1.6"},
                {"price": "2", "best_bid_quantity": "0.5", "best_ask_quantity": ""},
            ]
        )
    ]
    columns, refused = tick_columns(raws)
    assert not refused
    ticks = [repr(t) for t in columns.to_ticks()]  # repr: NaN fields compare equal
    assert ticks == [repr(to_tick(raw)) for raw in raws]
    again = TickColumns.from_ticks(columns.to_ticks())
    assert [repr(t) for t in again.to_ticks()] == ticks
    assert [repr(t) for t in TickColumns.concat([again, columns]).to_ticks()] == ticks + ticks
