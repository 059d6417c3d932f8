"""Backfill: recordings -> one Parquet row per product-second, computed by the very same engine."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tasks.cli import main as cli
from tasks.core.dataset import SCHEMA
from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from tasks.core.labels import forward_realized_vol, second_grid
from tasks.core.messages import MessageError
from tasks.core.timeutil import format_ts
from tasks.io.feature_store import load_dataset, write_dataset
from tasks.stages.backfill import backfill, batch_features

T0 = 1_764_999_000.0  # 2025-12-06 05:30 UTC


def envelope(ts: float, seq: int, product: str, mid: float, *, crossed: bool = False) -> dict:
    bid, ask = (mid + 0.01, mid - 0.01) if crossed else (mid - 0.01, mid + 0.01)
    ticker = {
        "type": "ticker",
        "product_id": product,
        "price": f"{mid:.2f}",
        "volume_24_h": "8103.2",
        "best_bid": f"{bid:.2f}",
        "best_ask": f"{ask:.2f}",
        "best_bid_quantity": "0.5",
        "best_ask_quantity": "0.25",
    }
    return {
        "channel": "ticker",
        "client_id": "",
        "timestamp": format_ts(ts),
        "sequence_num": seq,
        "events": [{"type": "update", "tickers": [ticker]}],
    }


def write_recording(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def walk(product: str, start: float, seconds: float, seed: int, mid: float) -> list[tuple]:
    rng = random.Random(seed)
    ts, out = start, []
    while ts < start + seconds:
        ts += rng.expovariate(3.0)
        mid = round(mid * math.exp(rng.gauss(0, 2e-4)), 2)
        out.append((ts, product, mid))
    return out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> list[Path]:
    """BTC-USD in two files (a 60 s gap between them) and ETH-USD in one, plus flaws."""
    root = tmp_path_factory.mktemp("recordings")
    btc = walk("BTC-USD", T0, 1200, seed=1, mid=90_000.0)
    btc_late = walk("BTC-USD", T0 + 1260, 600, seed=2, mid=btc[-1][2])
    eth = walk("ETH-USD", T0 + 30, 900, seed=3, mid=3_000.0)

    def lines(ticks):
        return [json.dumps(envelope(ts, i, p, mid)) for i, (ts, p, mid) in enumerate(ticks)]

    first = lines(btc)
    first.insert(100, first[99])  # a duplicate
    first.insert(200, "{not json")  # a bad line
    first.insert(300, json.dumps(envelope(btc[298][0], 10**6, "BTC-USD", 90_000.0, crossed=True)))
    first.insert(400, json.dumps({"channel": "heartbeats", "timestamp": format_ts(T0)}))
    return [
        write_recording(root / "BTC-USD_b.ndjson.gz", lines(btc_late)),  # given out of order
        write_recording(root / "BTC-USD_a.ndjson.gz", first),
        write_recording(root / "ETH-USD_a.ndjson", lines(eth)),
    ]


@pytest.fixture(scope="module")
def backfilled(recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    file_stats = backfill(recordings, out / "features.parquet")
    dir_stats = backfill(recordings, out / "features")
    return out, file_stats, dir_stats


def test_output_schema_and_both_layouts(backfilled):
    out, file_stats, dir_stats = backfilled
    assert pq.read_schema(out / "features.parquet").remove_metadata() == SCHEMA
    parts = sorted(
        p.relative_to(out / "features").parts[:2] for p in (out / "features").rglob("*.parquet")
    )
    assert parts == [
        ("product_id=BTC-USD", "date=2025-12-06"),
        ("product_id=ETH-USD", "date=2025-12-06"),
    ]
    single, partitioned = load_dataset(out / "features.parquet"), load_dataset(out / "features")
    pd.testing.assert_frame_equal(single, partitioned)
    assert list(single.columns) == SCHEMA.names
    assert str(single["ts"].dtype) == "datetime64[us, UTC]"
    assert file_stats.rows == dir_stats.rows == len(single)
    assert set(single["feature_set_version"]) == {FEATURE_SET_VERSION}


def test_stats_count_flaws(backfilled):
    _out, stats, _ = backfilled
    assert stats.files == 3 and stats.products == ["BTC-USD", "ETH-USD"]
    assert stats.bad_lines == 1 and "not JSON" in stats.first_bad_lines[0]
    assert stats.rejected == 1 and stats.reject_reasons == {"crossed book": 1}
    assert stats.duplicates == 1 and stats.gaps_restarted == 1
    assert stats.processed == stats.ticks - stats.rejected - stats.duplicates
    assert 0 < stats.labelled_rows < stats.rows


def test_rows_hold_the_last_ticks_features_at_or_before_each_second(backfilled, recordings):
    out, _stats, _ = backfilled
    frame = load_dataset(out / "features.parquet")
    rows = {row.record_id: row for row in batch_features(recordings)}
    for product, group in frame.groupby("product_id"):
        assert (group["ts"].diff().dropna() >= pd.Timedelta(seconds=1)).all()
        assert (group["ts"].dt.microsecond == 0).all()
        lag = (group["ts"] - group["tick_ts"]).dt.total_seconds()
        assert lag.between(0, 10).all(), product
        for _, record in group.iloc[::37].iterrows():
            row = rows[record["record_id"]]
            assert record["tick_ts"].timestamp() == pytest.approx(row.ts, abs=1e-6)
            got = record[list(FEATURE_NAMES)].to_numpy(dtype=float)
            np.testing.assert_array_equal(got, np.array(row.values))
    # the forward label of the backfill is the label module's, on the accepted ticks' mids
    btc = frame[frame["product_id"] == "BTC-USD"].reset_index(drop=True)
    assert btc["segment"].nunique() == 2 and set(btc["source"]) == {
        "BTC-USD_a.ndjson.gz",
        "BTC-USD_b.ndjson.gz",
    }
    for _segment, group in btc.groupby("segment"):
        assert group["fwd_vol_60"].iloc[-60:].isna().all()
        assert group["fwd_vol_60"].iloc[:-60].notna().all()


def test_forward_vol_matches_the_label_module(backfilled, recordings):
    out, _stats, _ = backfilled
    frame = load_dataset(out / "features.parquet")
    eth = frame[frame["product_id"] == "ETH-USD"].reset_index(drop=True)
    mids = []
    for line in recordings[2].read_text().splitlines():  # a flawless file: one row per line
        ticker = json.loads(line)["events"][0]["tickers"][0]
        mids.append((float(ticker["best_bid"]) + float(ticker["best_ask"])) / 2)
    times = [row.ts for row in batch_features([recordings[2]])]
    grid = second_grid(pd.DataFrame({"product_id": "ETH-USD", "ts": times, "mid": mids}))
    expected = forward_realized_vol(grid, 60)
    assert len(expected) == len(eth)
    np.testing.assert_allclose(eth["fwd_vol_60"].to_numpy(), expected.to_numpy(), rtol=1e-12)


def test_command_writes_a_file_and_reports(recordings, tmp_path, capsys, monkeypatch, request):
    from tasks.settings import get_settings

    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path / "data"))  # not the project's folder
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    out = tmp_path / "set.parquet"
    assert cli(["backfill", *map(str, recordings[1:]), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == len(load_dataset(out)) > 0
    assert cli(["backfill", str(tmp_path / "missing.ndjson"), "--out", str(out)]) == 2


@pytest.mark.shared_data
def test_real_recordings(shared_recordings, tmp_path):
    files = shared_recordings[2:5]  # three consecutive files of one session
    stats = backfill(files, tmp_path / "real")
    frame = load_dataset(tmp_path / "real")
    assert stats.rows == len(frame) > 1000 and stats.rejected == 0 and stats.bad_lines == 0
    assert frame["segment"].nunique() == 3  # the files are 30-60 s apart: label segments split
    assert frame["fwd_vol_60"].notna().mean() > 0.8
    assert frame[["realized_vol_60", "n", "spread_bps", "imbalance"]].notna().all().all()
    assert frame["ret_std"].notna().mean() > 0.99  # NaN only while a segment has one return
    rows = {row.record_id: row.values for row in batch_features(files)}
    sample = frame.iloc[::101]
    for record_id, values in zip(
        sample["record_id"], sample[list(FEATURE_NAMES)].to_numpy(), strict=True
    ):
        np.testing.assert_array_equal(values, np.array(rows[record_id]))


def _with_ticker(**fields) -> dict:
    line = envelope(T0 + 300.2, 10**15, "BTC-USD", 90_000.0)
    line["events"][0]["tickers"][0].update(fields)
    return line


# issue 15: one valid-looking extreme line in the middle of a recording, with what counts it
EXTREMES = {
    "sequence_10_15": (envelope(T0 + 300.2, 10**15, "BTC-USD", 90_000.0), "sequence_jumps"),
    "sequence_2_63": (envelope(T0 + 300.2, 2**63, "BTC-USD", 90_000.0), "bad_lines"),
    "book_1e308": (_with_ticker(best_bid="1e308", best_ask="1e308"), "rejected"),
    "book_1e-320": (_with_ticker(best_bid="1e-320", best_ask="1e-320"), "rejected"),
    "price_1e308_no_book": (_with_ticker(price="1e308", best_bid="", best_ask=""), "rejected"),
    "product_dot_dot": (_with_ticker(product_id=".."), "bad_lines"),
    "product_10_kb": (_with_ticker(product_id="X" * 10_000), "bad_lines"),
    "timestamp_offset": (
        {
            **envelope(T0 + 300.2, 10**15, "BTC-USD", 90_000.0),
            "timestamp": "2025-12-06T10:35:00.2+05:00",
        },
        "rejected",
    ),
}


@pytest.fixture(scope="module")
def clean_walk(tmp_path_factory):
    """A 10-minute BTC-USD recording, its backfill, and where an extreme line goes."""
    root = tmp_path_factory.mktemp("clean")
    ticks = walk("BTC-USD", T0, 600, seed=5, mid=90_000.0)
    lines = [json.dumps(envelope(ts, i, p, mid)) for i, (ts, p, mid) in enumerate(ticks)]
    at = next(i for i, (ts, _p, _m) in enumerate(ticks) if ts > T0 + 300.2)
    path = write_recording(root / "BTC-USD_x.ndjson", lines)
    stats = backfill([path], root / "features.parquet")
    return lines, at, stats, load_dataset(root / "features.parquet")


@pytest.mark.parametrize("name", list(EXTREMES))
def test_one_extreme_line_costs_itself_alone(clean_walk, tmp_path, name):
    """A sequence number of 10^15 dropped the ~500 ticks after it as duplicates, 2^63 and a
    10 KB product id crashed the backfill (an int64 overflow, a file name too long), a book at
    1e308 died in math.log: now the line or tick is counted and every row is the clean run's."""
    lines, at, clean_stats, clean = clean_walk
    line, counter = EXTREMES[name]
    path = write_recording(
        tmp_path / "BTC-USD_x.ndjson", [*lines[:at], json.dumps(line), *lines[at:]]
    )
    stats = backfill([path], tmp_path / "features")
    pd.testing.assert_frame_equal(load_dataset(tmp_path / "features"), clean)
    assert getattr(stats, counter) == getattr(clean_stats, counter) + 1
    assert stats.processed == clean_stats.processed and stats.duplicates == 0


@pytest.mark.parametrize("product_id", ["..", "X" * 10_000, "BTC/USD"])
def test_a_partition_is_named_only_by_a_product_id(clean_walk, tmp_path, product_id):
    """The feature store's folders follow the ticks' rule: anything else is refused, naming the
    field, before a file is written (the parse step keeps such ids out in the first place)."""
    frame = clean_walk[3].assign(product_id=product_id)
    with pytest.raises(MessageError, match="product_id: not a product id"):
        write_dataset(frame, tmp_path / "features")
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".write.lock"] == []
