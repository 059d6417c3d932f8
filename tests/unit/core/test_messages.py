import math

import pytest

from tasks.core.messages import (
    MAX_PRICE,
    MAX_SIZE,
    MIN_PRICE,
    MessageError,
    RawTick,
    is_product_id,
    parse_envelope,
    ticks_from_envelope,
    to_tick,
)
from tasks.core.timeutil import format_ts, parse_ts

ENVELOPE = {
    "channel": "ticker",
    "client_id": "",
    "timestamp": "2025-12-06T05:45:36.037320Z",
    "sequence_num": 7,
    "events": [
        {
            "type": "update",
            "tickers": [
                {
                    "type": "ticker",
                    "product_id": "BTC-USD",
                    "price": "89565",
                    "volume_24_h": "8103.26",
                    "best_bid": "89574.23",
                    "best_ask": "89574.24",
                    "best_bid_quantity": "0.05342067",
                    "best_ask_quantity": "0.24894374",
                }
            ],
        }
    ],
}


def test_parse_ts_handles_nanoseconds_and_round_trips():
    assert parse_ts("2025-12-06T05:45:36.037320Z") == pytest.approx(1764999936.03732, abs=1e-6)
    assert parse_ts("2023-02-09T20:32:50.714964855Z") == pytest.approx(
        1675974770.714964855, abs=1e-6
    )
    assert format_ts(parse_ts("2025-12-06T05:45:36.037320Z")) == "2025-12-06T05:45:36.037320Z"
    with pytest.raises(ValueError, match=r"unparseable|not an ISO"):
        parse_ts("yesterday")
    for out_of_range in ("2025-12-06T25:00:00Z", "2025-12-06T05:61:00Z", "2025-02-30T00:00:00Z"):
        with pytest.raises(ValueError, match="out of range"):
            parse_ts(out_of_range)


def test_envelope_to_tick_keeps_ticker_unchanged():
    env = parse_envelope(ENVELOPE)
    (raw,) = ticks_from_envelope(env, received_at="2025-12-06T05:45:36.1Z", source="conn-1")
    assert raw.ticker is ENVELOPE["events"][0]["tickers"][0]
    again = RawTick.from_bytes(raw.to_bytes())
    assert again == raw
    tick = to_tick(raw)
    assert (
        tick.price == 89565.0 and tick.sequence_num == 7 and tick.record_id == "BTC-USD|conn-1|7|0"
    )


def test_missing_quantities_are_nan_not_zero():
    ticker = dict(ENVELOPE["events"][0]["tickers"][0])
    del ticker["best_bid_quantity"]
    raw = RawTick("BTC-USD", ENVELOPE["timestamp"], 1, "", "f", "update", 0, ticker)
    assert math.isnan(to_tick(raw).best_bid_quantity)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("price", "-1", "price"), ("price", "abc", "price"), ("best_bid", "99999999", "crossed")],
)
def test_bad_tickers_name_the_field(field, value, message):
    ticker = dict(ENVELOPE["events"][0]["tickers"][0], **{field: value})
    raw = RawTick("BTC-USD", ENVELOPE["timestamp"], 1, "", "f", "update", 0, ticker)
    with pytest.raises(MessageError, match=message):
        to_tick(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "1e308"),  # issue 15, item 2: passed, then math.log died in the engine
        ("price", "1e-320"),  # subnormal
        ("best_bid", "1e-13"),
        ("best_ask", "1e13"),
        ("best_bid_quantity", "1e300"),
        ("best_ask_quantity", "-0.0001"),
        ("volume_24_h", "-1"),
        ("volume_24_h", "inf"),
    ],
)
def test_prices_and_sizes_out_of_range_are_refused_naming_the_field(field, value):
    ticker = dict(ENVELOPE["events"][0]["tickers"][0], **{field: value})
    raw = RawTick("BTC-USD", ENVELOPE["timestamp"], 1, "", "f", "update", 0, ticker)
    with pytest.raises(MessageError, match=f"'{field}' is (out of range|not finite)"):
        to_tick(raw)


def test_prices_at_the_bounds_are_taken():
    ticker = dict(
        ENVELOPE["events"][0]["tickers"][0],
        price=repr(MIN_PRICE),
        best_bid=repr(MIN_PRICE),
        best_ask=repr(MAX_PRICE),
        best_bid_quantity="0",
        best_ask_quantity=repr(MAX_SIZE),
    )
    raw = RawTick("BTC-USD", ENVELOPE["timestamp"], 1, "", "f", "update", 0, ticker)
    tick = to_tick(raw)
    assert (tick.best_bid, tick.best_ask, tick.best_ask_quantity) == (
        MIN_PRICE,
        MAX_PRICE,
        MAX_SIZE,
    )


@pytest.mark.parametrize(
    "product_id",
    [
        "",
        "..",
        "../x",
        "BTC/USD",
        "btc-usd",
        "BTC",
        "BTC-USD\n",
        "B" * 10_000,
        "BTC-USD-" + "X" * 40,
    ],
)
def test_one_rule_for_a_product_id(product_id):
    """Issue 15, items 6, 9b and 12: ``..`` left the archive, 10 KB crashed the backfill on a
    file name, and an empty id passed the featurizer but not the scorer."""
    assert not is_product_id(product_id)
    ticker = dict(ENVELOPE["events"][0]["tickers"][0], product_id=product_id)
    raw = RawTick(product_id, ENVELOPE["timestamp"], 1, "", "f", "update", 0, ticker)
    with pytest.raises(MessageError, match="product_id: not a product id"):
        to_tick(raw)
    errors: list[str] = []
    message = dict(ENVELOPE, events=[{"type": "update", "tickers": [ticker]}])
    assert (
        ticks_from_envelope(parse_envelope(message), received_at="", source="c", errors=errors)
        == []
    )
    assert len(errors) == 1 and "not a product id" in errors[0]


def test_the_exchange_s_product_ids_are_product_ids():
    for product_id in ("BTC-USD", "ETH-USDC", "SHIB-USD", "1INCH-EUR", "BIT-31JAN25-CDE"):
        assert is_product_id(product_id)


@pytest.mark.parametrize("value", [2**63, 2**53, -2, 10**20, "9" * 400, 1.5, True])
def test_sequence_numbers_out_of_range_are_refused(value):
    """Issue 15, item 1: 2^63 passed the parse, then overflowed the raw contract's int64."""
    with pytest.raises(MessageError, match="sequence_num"):
        parse_envelope(dict(ENVELOPE, sequence_num=value))
    record = RawTick("BTC-USD", ENVELOPE["timestamp"], 1, "", "f", "update", 0, {}).to_record()
    with pytest.raises(MessageError, match="sequence_num"):
        RawTick.from_record(dict(record, sequence_num=value))


def test_sequence_numbers_in_range_are_taken():
    for value in (0, 2**53 - 1, -1, "12"):
        assert parse_envelope(dict(ENVELOPE, sequence_num=value)).sequence_num == int(value)


def test_a_timestamp_with_an_offset_is_refused():
    """Issue 15, item 12: the engine takes UTC only; the raw contract now parses timestamps with
    the same parser (the ``offset_timestamp`` corruption in tests/contract)."""
    ts = "2025-12-06T10:45:36.037320+05:00"
    raw = RawTick("BTC-USD", ts, 1, "", "f", "update", 0, ENVELOPE["events"][0]["tickers"][0])
    with pytest.raises(MessageError, match="timestamp"):
        to_tick(raw)


def test_non_ticker_channels_give_no_ticks():
    env = parse_envelope(
        {"channel": "heartbeats", "timestamp": "2025-12-06T05:45:36Z", "events": []}
    )
    assert ticks_from_envelope(env, received_at="", source="x") == []
    with pytest.raises(MessageError):
        parse_envelope("{not json")


def test_one_bad_ticker_loses_nothing_else_of_its_envelope():
    good = ENVELOPE["events"][0]["tickers"][0]
    message = dict(ENVELOPE, events=[{"type": "update", "tickers": [{"price": "1"}, good]}, "x"])
    env = parse_envelope(message)
    errors: list[str] = []
    (raw,) = ticks_from_envelope(env, received_at="", source="c", errors=errors)
    assert raw.ticker is good and raw.index == 1
    assert len(errors) == 2 and "no product_id" in errors[0]
    with pytest.raises(MessageError):
        ticks_from_envelope(env, received_at="", source="c")


def test_invalid_utf8_in_a_recording_is_a_bad_line_not_a_changed_value(tmp_path):
    import json

    from tasks.io.recordings import BadLine, read_ticks

    good = json.dumps(ENVELOPE).encode()
    corrupt = good.replace(b'"BTC-USD"', b'"BTC-\xffSD"')
    path = tmp_path / "r.ndjson"
    path.write_bytes(good + b"\n" + corrupt + b"\n")
    items = list(read_ticks([path]))
    assert [type(i).__name__ for i in items] == ["RawTick", "BadLine"]
    assert isinstance(items[1], BadLine) and items[1].lineno == 2
