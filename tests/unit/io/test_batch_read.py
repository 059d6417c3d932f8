"""The backfill's whole-file read (``read_tick_columns``) is the line-by-line read, exactly.

``read_tick_columns`` decodes whole files into typed structs, parses timestamps on columns,
estimates receive times on arrays and merges files with one sort where it can. Hypothesis writes
several recordings of mostly clean lines with what a feed or a damaged file carries (timestamps
out of order, in other forms or invalid, bad product ids and sequence numbers, numbers as JSON
numbers, several tickers per message, other channels, invalid UTF-8 in a field nobody reads,
bad JSON, blank lines, a cut-off last line, a cut-off gzip stream) and compares it with
``merged_ticks`` (what replay publishes) checked tick by tick with ``to_tick``: the same valid
ticks in the same order bit for bit, the same refusals with the same errors, the same bad lines.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.messages import MessageError, TickColumns, to_tick
from tasks.core.timeutil import format_ts
from tasks.io.recordings import BadLine, merged_ticks, read_tick_columns
from tasks.stages.backfill import BackfillStats, load_tick_columns

T0 = 1_767_225_600.0


def mostly(clean, *odd):
    """The clean value most of the time, else one of ``odd``."""
    return st.sampled_from([clean] * 5 * len(odd) + list(odd))


numbers = mostly("100.5", "99", "", "-1", "nan", "1e400", "1_0", 100.5, None, "abc")


@st.composite
def tickers(draw) -> dict:
    ticker = {"type": "ticker", "product_id": draw(mostly("BTC-USD", "ETH-USD", "../x", 7))}
    for name in ("price", "best_bid", "best_ask", "best_bid_quantity", "volume_24_h"):
        if draw(st.integers(0, 5)):
            ticker[name] = draw(numbers)
    if draw(st.integers(0, 9)) == 0:
        ticker["best_bid"], ticker["best_ask"] = "101", "100"  # crossed
    ticker["low_24_h"] = "1"
    return ticker


def timestamp_text(ts: float, form: str) -> str:
    text = format_ts(ts)
    return {
        "exchange": text,
        "offset": text[:-1] + "+00:00",
        "seconds": text[:19] + "Z",
        "space": text[:10] + " " + text[11:],
        "no day": text[:8] + "30" + text[10:] if text[5:7] == "02" else text[:8] + "32" + text[10:],
        "garbage": "yesterday",
    }[form]


@st.composite
def line(draw, seq: int, ts: float) -> bytes:
    kind = draw(mostly("ticker", "heartbeats", "garbage", "blank", "invalid utf-8", "numbers"))
    if kind == "garbage":
        return draw(st.sampled_from([b"garbage", b"{", b"[1, 2]", b'{"channel": 5}']))
    if kind == "blank":
        return b"  "
    form = draw(mostly("exchange", "offset", "seconds", "space", "no day", "garbage"))
    events = [
        {"type": "update", "tickers": draw(st.lists(tickers(), min_size=1, max_size=2))}
        for _ in range(draw(mostly(1, 2, 0)))
    ]
    message = {
        "channel": "heartbeats" if kind == "heartbeats" else "ticker",
        "client_id": "",
        "timestamp": timestamp_text(ts, form),
        "sequence_num": draw(mostly(seq, -5, 2**60, "7", True)),
        "events": events,
    }
    if draw(st.integers(0, 19)) == 0:
        message["type"] = "error"
    text = json.dumps(message).encode()
    if kind == "numbers":  # a JSON number where the exchange sends text
        text = text.replace(b'"price": "100.5"', b'"price": 100.5')
    if kind == "invalid utf-8":  # in a ticker's field the typed decoder skips
        text = text.replace(b'"low_24_h": "1"', b'"low_24_h": "\xff"', 1)
    return text


@st.composite
def recording(draw) -> tuple[bytes, str]:
    n = draw(st.integers(0, 30))
    steps = draw(
        st.lists(mostly(0.5, 0.0, -3.0, 900.0, -50_000.0, 0.000001), min_size=n, max_size=n)
    )
    start = T0 + draw(st.sampled_from([0.0, 2.0, 5.0, 3600.0]))
    times = np.cumsum([start, *steps])[1:] if n else []
    lines = [draw(line(seq, float(ts))) for seq, ts in enumerate(times)]
    data = b"\n".join(lines) + draw(mostly(b"\n", b""))
    how = draw(mostly("gzip", "plain", "cut gzip"))
    if how == "gzip":
        data = gzip.compress(data)
    elif how == "cut gzip":
        data = gzip.compress(data)[: -draw(st.integers(1, 30))]
    return data, how


def line_by_line(paths: list[Path]):
    """merged_ticks checked tick by tick: the reference."""
    expected, refused, bad, raw_ticks = [], [], [], 0
    for item in merged_ticks(paths):
        if isinstance(item, BadLine):
            bad.append(item.describe())
            continue
        raw_ticks += 1
        try:
            expected.append(to_tick(item))
        except MessageError as exc:
            refused.append(f"{item.record_id}: {exc}")
    return TickColumns.from_ticks(expected), refused, bad, raw_ticks


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(recording(), min_size=1, max_size=3))
def test_the_whole_file_read_is_the_line_by_line_read(files):
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k, (data, how) in enumerate(files):
            path = Path(folder) / f"r{k}.ndjson{'.gz' if 'gzip' in how else ''}"
            path.write_bytes(data)
            paths.append(path)
        want, refused, bad, raw_ticks = line_by_line(paths)
        got = read_tick_columns(paths)
        stats = BackfillStats()
        columns = load_tick_columns(paths, stats)

    assert [f"{record}: {exc}" for _, record, exc in got.refused] == refused
    assert [item.describe() for item in got.bad_lines] == bad
    assert sum(got.raw_ticks.values()) == raw_ticks == stats.ticks
    assert (stats.rejected, stats.bad_lines) == (len(refused), len(bad))
    for result in (got.columns, columns):
        assert list(result.product_id) == list(want.product_id)
        assert list(result.source) == list(want.source)
        for name in ("ts", "sequence_num", "index", "price", "best_bid", "best_ask"):
            assert getattr(result, name).tobytes() == getattr(want, name).tobytes(), name
        for name in ("best_bid_quantity", "best_ask_quantity", "volume_24h"):
            assert getattr(result, name).tobytes() == getattr(want, name).tobytes(), name
