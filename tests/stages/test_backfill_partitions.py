"""The backfill by (product, day) partition gives the one-process backfill's rows and counts."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from tasks.cli import main as cli
from tasks.core.dataset import COLUMNS
from tasks.io.feature_store import load_dataset
from tasks.sim.simulator import DEFAULT_START
from tasks.sim.writer import write_recordings
from tasks.stages.backfill import backfill
from tasks.stages.backfill_partitions import backfill_partitioned, plan_partitions, scan_file

MIDNIGHT = DEFAULT_START + 86_400  # 2026-01-02


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three products across two midnights: a session over the first, a two-minute gap just
    after it, a session resuming the next day after hours without data, and a damaged line."""
    root = tmp_path_factory.mktemp("partitions")
    products = ["BTC-USD", "ETH-USD", "SOL-USD"]
    write_recordings(root, products, seed=1, start=MIDNIGHT - 1200, minutes=22)
    write_recordings(root, products, seed=2, start=MIDNIGHT + 240, minutes=12)
    write_recordings(root, products[:2], seed=3, start=MIDNIGHT + 86_400 - 600, minutes=18)
    with gzip.open(root / "BTC-USD_damaged.ndjson.gz", "wt") as fh:
        ticker = {"product_id": "BTC-USD", "price": "x", "best_bid": "1", "best_ask": "2"}
        envelope = {
            "channel": "ticker",
            "timestamp": "2026-01-02T00:10:00.000000Z",
            "sequence_num": 0,
            "events": [{"type": "update", "tickers": [ticker]}],
        }
        fh.write(json.dumps(envelope) + "\n{not json\n")
    return root


@pytest.fixture(scope="module")
def one_process(recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "features"
    return backfill([recordings], out), load_dataset(out)


def test_partitions_cover_each_product_and_day(recordings):
    spans = [scan_file(str(p)) for p in sorted(recordings.glob("*.ndjson.gz"))]
    keys = {(p.product, p.date) for p in plan_partitions(spans, config=_config())}
    assert {("SOL-USD", "2026-01-03")}.isdisjoint(keys)  # its last session ended on the 2nd
    assert {("BTC-USD", d) for d in ("2026-01-01", "2026-01-02", "2026-01-03")} <= keys


@pytest.mark.slow  # about 20 s: every partition reads the three-product files
def test_same_rows_and_counts_as_one_process(recordings, one_process, tmp_path):
    stats, frame = one_process
    out = tmp_path / "features"
    partitioned = backfill_partitioned([recordings], out)
    pd.testing.assert_frame_equal(load_dataset(out), frame)
    assert frame["segment"].max() > 1  # the gaps began new label segments, numbered across days
    assert frame["ts"].dt.strftime("%Y-%m-%d").nunique() == 3
    ignored = {"seconds", "out"}
    expected = {k: v for k, v in stats.as_dict().items() if k not in ignored}
    assert {k: v for k, v in partitioned.as_dict().items() if k not in ignored} == expected
    assert expected["bad_lines"] == 1 and expected["rejected"] == 1


@pytest.mark.slow
def test_a_single_parquet_file_too(recordings, one_process, tmp_path):
    backfill_partitioned([recordings], tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(load_dataset(tmp_path / "features.parquet"), one_process[1])


@pytest.mark.slow
@pytest.mark.integration
def test_command_on_a_local_dask_cluster(recordings, one_process, tmp_path, capsys):
    """``cryptovol backfill --workers 2``: a local cluster of two worker processes."""
    out = tmp_path / "features"
    args = ["backfill", str(recordings), "--out", str(out), "--workers", "2", "--skip-contracts"]
    assert cli(args) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    pd.testing.assert_frame_equal(load_dataset(out)[list(COLUMNS)], one_process[1])
    assert report["rows"] == one_process[0].rows


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_recordings(shared_recordings, tmp_path):
    one = backfill(shared_recordings, tmp_path / "one")
    many = backfill_partitioned(shared_recordings, tmp_path / "many")
    pd.testing.assert_frame_equal(load_dataset(tmp_path / "many"), load_dataset(tmp_path / "one"))
    assert (many.rows, many.gaps_restarted) == (one.rows, one.gaps_restarted)


def _config():
    from tasks.core.features import EngineConfig

    return EngineConfig()


@pytest.mark.slow
def test_a_run_that_fails_on_a_later_partition_lands_none(recordings, tmp_path, monkeypatch):
    """Issue 15's whole runs hold here too: the partitions are one commit, so a write that fails
    on the third partition leaves the store as it was (before, the first two had landed)."""
    import errno

    from tasks.io.files import WriteError
    from tasks.stages import backfill_partitions

    out = tmp_path / "features"
    first = next(p for p in sorted(recordings.glob("*.ndjson.gz")) if "damaged" not in p.name)
    backfill([first], out)
    before = load_dataset(out)
    staged = backfill_partitions.stage_partition
    calls = []

    def third_fills_the_disk(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return staged(*args, **kwargs)

    monkeypatch.setattr(backfill_partitions, "stage_partition", third_fills_the_disk)
    with pytest.raises(WriteError, match="No space left on device"):
        backfill_partitioned([recordings], out)
    assert len(calls) == 3
    pd.testing.assert_frame_equal(load_dataset(out), before)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".write.lock"]


@pytest.mark.parametrize("envelopes", [0, 1, 64, 100, 128, 5_000])
def test_a_scan_reads_the_same_end_timestamps_as_a_full_search(envelopes):
    """The scan searches only the ends of a file for its span (the tail in growing pieces)."""
    from tasks.stages.backfill_partitions import _ENDS, _TIMESTAMP, _end_stamps

    lines = [
        json.dumps({"timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z"})
        + " " * (i * 37 % 3000)  # unequal lines, the last 64 longer than the first piece
        for i in range(envelopes)
    ]
    data = "\n".join(lines).encode()
    every = _TIMESTAMP.findall(data)
    expected = every if len(every) < _ENDS else every[:_ENDS] + every[-_ENDS:]
    assert _end_stamps(data) == expected
