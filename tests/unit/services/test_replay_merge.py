"""Replay's file merge and speed parsing, and the exchange's recording source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.timeutil import format_ts
from tasks.io.recordings import BadLine, merge_by_receive_time
from tasks.services.replay import parse_speed
from tasks.sim.exchange import recording_ticks

T0 = 1767225600.0


def _line(ts: float, seq: int, product: str = "BTC-USD") -> str:
    ticker = {"type": "ticker", "product_id": product, "price": str(100 + seq)}
    return json.dumps(
        {
            "channel": "ticker",
            "timestamp": format_ts(ts),
            "sequence_num": seq,
            "events": [{"type": "update", "tickers": [ticker]}],
        }
    )


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_files_are_merged_by_event_time_with_bad_lines_kept_in_place(tmp_path):
    a = _write(
        tmp_path / "a.ndjson", [_line(T0 + 0, 0), _line(T0 + 2, 1), "garbage", _line(T0 + 4, 2)]
    )
    b = _write(tmp_path / "b.ndjson", [_line(T0 + 1, 0, "ETH-USD"), _line(T0 + 3, 1, "ETH-USD")])
    late = _write(tmp_path / "late.ndjson", [_line(T0 + 10, 0)])
    empty = _write(tmp_path / "empty.ndjson", [])
    merged = list(merge_by_receive_time([late, empty, a, b]))
    order = [
        (Path(item.path).name, "bad" if isinstance(item, BadLine) else item.envelope.sequence_num)
        for _, item in merged
    ]
    assert order == [
        ("a.ndjson", 0),
        ("b.ndjson", 0),
        ("a.ndjson", 1),
        ("a.ndjson", "bad"),
        ("b.ndjson", 1),
        ("a.ndjson", 2),
        ("late.ndjson", 0),
    ]
    times = [ts for ts, _ in merged]
    assert times == sorted(times)


def test_a_file_of_garbage_is_read_once_as_bad_lines(tmp_path):
    junk = _write(tmp_path / "junk.ndjson", ["x", "y"])
    good = _write(tmp_path / "good.ndjson", [_line(T0, 0)])
    merged = [item for _, item in merge_by_receive_time([good, junk])]
    assert [isinstance(i, BadLine) for i in merged] == [True, True, False]
    assert [i.lineno for i in merged] == [1, 2, 1]


def test_speed_values():
    assert parse_speed("max") is None
    assert parse_speed("MAX") is None
    assert parse_speed("2.5") == 2.5
    for bad in ("0", "-1", "inf", "nan", "fast"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def test_a_looping_recording_keeps_event_time_increasing(tmp_path):
    path = _write(tmp_path / "r.ndjson", [_line(T0, 0), _line(T0 + 5, 1), "bad"])
    ticks = recording_ticks([path], loop=True)
    first_six = [next(ticks) for _ in range(6)]
    assert [ts - T0 for ts, _ in first_six] == [0, 5, 6, 11, 12, 17]
    assert [t["price"] for _, t in first_six] == ["100", "101"] * 3
    assert [ts for ts, _ in recording_ticks([path])] == [T0, T0 + 5]
