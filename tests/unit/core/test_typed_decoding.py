"""The typed decoders of exchange messages and ``ticks.raw`` records are a shortcut only: text
they take gives what the generic path gives for the same JSON, and text they do not take falls
back to it, so every message is accepted or refused alike, with the same reason."""

from __future__ import annotations

import json
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.core.messages import MessageError, RawTick, parse_envelope

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
