"""One tick stamped far from its receive time is refused, the same way in batch and stream.

Issue 9, cases 1 and 2: a single ticker an hour or a year ahead moved its product's event time
forward, so every later tick was dropped as late (in the stream, and again after each restart);
a single ticker years back sorted itself first in the backfill, whose duplicate rule then threw
away most of the file (rows 71 -> 28) while the stream kept them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.messages import (
    MAX_LAG_S,
    MAX_LEAD_S,
    MessageError,
    RawTick,
    to_tick,
)
from tasks.core.timeutil import format_ts
from tasks.io.exchange_client import AdvancedTradeClient, _Session
from tasks.io.recordings import RecordedEnvelope, read_envelopes, read_ticks
from tasks.stages.backfill import BackfillStats, backfill, load_ticks

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
YEAR = 365 * 86400.0
TICKER = {"product_id": "BTC-USD", "price": "100.5", "best_bid": "100", "best_ask": "101"}


def _raw(ts: float, received: float, offset: float = 0.0) -> RawTick:
    return RawTick(
        "BTC-USD", format_ts(ts), 1, format_ts(received), "c-1", "update", 0, TICKER, offset
    )


def _envelope(ts: float, seq: int, product: str = "BTC-USD", mid: float = 100.0) -> dict:
    ticker = {
        "product_id": product,
        "price": f"{mid:.2f}",
        "best_bid": f"{mid - 0.01:.2f}",
        "best_ask": f"{mid + 0.01:.2f}",
    }
    return {
        "channel": "ticker",
        "timestamp": format_ts(ts),
        "sequence_num": seq,
        "events": [{"type": "update", "tickers": [ticker]}],
    }


def _recording(folder: Path, *, stamps: dict[int, float] | None = None, skip=()) -> Path:
    """Ten minutes of one product, a tick every 0.5 s; ``stamps`` restamps lines by index."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(1200):
        if i in skip:
            continue
        env = _envelope(T0 + 0.5 * i, i, mid=100.0 + 0.01 * (i % 37))
        if stamps and i in stamps:
            env["timestamp"] = format_ts(stamps[i])
        lines.append(json.dumps(env))
    path = folder / "rec.ndjson"  # one name in every folder: the same record ids
    path.write_text("\n".join(lines) + "\n")
    return path


POISON = {300: T0 + YEAR, 600: T0 + 3600.0, 900: T0 - 5 * YEAR}


def test_to_tick_bounds_event_time_by_receive_time():
    assert to_tick(_raw(T0, T0 + 0.2)).ts == T0
    assert to_tick(_raw(T0 + MAX_LEAD_S - 1, T0)).ts == T0 + MAX_LEAD_S - 1
    with pytest.raises(MessageError, match="after its receive time"):
        to_tick(_raw(T0 + 3600, T0))
    with pytest.raises(MessageError, match="before its receive time"):
        to_tick(_raw(T0 - MAX_LAG_S - 1, T0))
    # a source whose clock runs a year behind ours (a simulated exchange): no offender
    assert to_tick(_raw(T0, T0 + YEAR, offset=-YEAR)).ts == T0
    # round trip of the offset through the topic's JSON
    raw = _raw(T0, T0 + YEAR, offset=-YEAR)
    assert RawTick.from_bytes(raw.to_bytes()) == raw
    assert "clock_offset_s" not in _raw(T0, T0).to_record()  # absent means 0


def test_a_line_far_from_its_neighbours_gets_their_receive_time(tmp_path):
    path = _recording(tmp_path, stamps=POISON)
    items = [i for i in read_envelopes([path]) if isinstance(i, RecordedEnvelope)]
    for index, item in enumerate(items):
        expected = T0 + 0.5 * index
        assert item.received == pytest.approx(expected, abs=1.0), index
        if index not in POISON:  # lines in order keep their own timestamp as it was written
            assert item.received_at == item.envelope.timestamp
    refused = {}
    for raw in read_ticks([path]):
        try:
            to_tick(raw)
        except MessageError as exc:
            refused[raw.sequence_num] = str(exc)
    assert set(refused) == set(POISON)
    assert all(reason.startswith("event time:") for reason in refused.values())


@pytest.mark.parametrize("poison", sorted(POISON))
def test_backfill_with_one_misstamped_tick_equals_backfill_without_it(poison, tmp_path):
    clean = backfill([_recording(tmp_path / "clean", skip={poison})], tmp_path / "clean.parquet")
    stats = backfill(
        [_recording(tmp_path / "poisoned", stamps={poison: POISON[poison]})],
        tmp_path / "poisoned.parquet",
    )
    assert stats.rejected == 1 and stats.reject_reasons == {"event time": 1}
    assert stats.rows == clean.rows and stats.labelled_rows == clean.labelled_rows
    assert stats.duplicates == 0 and stats.late_dropped == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "poisoned.parquet"), pd.read_parquet(tmp_path / "clean.parquet")
    )


def test_backfill_takes_ticks_in_the_order_replay_sends_them(tmp_path):
    """A tick 1.5 s late is time-adjusted by the engine in both paths, never sorted first (the
    old stable sort made the ticks between it and its place duplicates in the batch only)."""
    recording = _recording(tmp_path, stamps={500: T0 + 0.5 * 500 - 1.5})
    ticks = load_ticks([recording], BackfillStats())
    assert [t.sequence_num for t in ticks] == list(range(1200))
    stats = backfill([recording], tmp_path / "out.parquet")
    assert stats.duplicates == 0 and stats.late_adjusted == 1 and stats.rows > 0


def test_capture_measures_each_connection_s_clock_offset():
    """Every message of a connection a year behind our clock leads by the same offset: none is
    refused; one stamped an hour ahead of the others is."""
    client = AdvancedTradeClient("ws://unused", ["BTC-USD"])
    session = _Session("run-1", time.monotonic())
    now = time.time()
    offsets = []
    for i in range(20):
        ts = now - YEAR + i + (3600.0 if i == 12 else 0.0)
        text = json.dumps(_envelope(ts, i))
        received = client._accept(text, session)
        offsets.append(received.clock_offset_s)
        (raw,) = [
            RawTick(
                "BTC-USD",
                format_ts(ts),
                i,
                format_ts(received.received_at),
                session.id,
                "update",
                0,
                TICKER,
                received.clock_offset_s,
            )
        ]
        if i == 12:
            with pytest.raises(MessageError, match="after its receive time"):
                to_tick(raw)
        else:
            assert to_tick(raw).sequence_num == i
    assert all(o == pytest.approx(-YEAR, abs=60) for o in offsets)
