"""Training reads a partitioned store partition by partition, one session a day, within a budget."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic_frames import synthetic_sessions

from tasks.io.feature_store import load_dataset, write_dataset
from tasks.stages.data import load_frame, sample_positions

SESSION_S = 4000
DAYS = 5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two products, one session on each of five days."""
    frame = synthetic_sessions(levels=(1.0,) * DAYS, seconds=SESSION_S, gap_s=86_400 - SESSION_S)
    root = tmp_path_factory.mktemp("reads")
    write_dataset(frame, root / "features")
    write_dataset(frame, root / "features.parquet")
    return root


def _days(frame: pd.DataFrame) -> dict[str, list[str]]:
    dates = frame["ts"].dt.strftime("%Y-%m-%d")
    return {p: sorted(set(dates[frame["product_id"] == p])) for p in sorted(set(frame.product_id))}


def test_without_a_budget_every_row_is_read(store, tmp_path):
    frame, info = load_frame([store / "features"], tmp_path)
    pd.testing.assert_frame_equal(frame, load_dataset(store / "features"))
    assert info.rows_used == info.rows_available == len(frame)


def test_a_budget_keeps_a_contiguous_session_of_every_day(store, tmp_path):
    everything = load_dataset(store / "features")
    budget = DAYS * 3600
    frame, info = load_frame([store / "features"], tmp_path, max_rows_per_product=budget)
    assert _days(frame) == _days(everything)  # every day is represented
    dates = frame["ts"].dt.strftime("%Y-%m-%d")
    for (product, _date), rows in frame.groupby(["product_id", dates]):
        assert len(rows) == 3600
        assert (rows["ts"].diff().dropna() == pd.Timedelta(seconds=1)).all()  # contiguous
        day = everything[everything["ts"].dt.date == rows["ts"].iloc[0].date()]
        day = day[day["product_id"] == product].reset_index(drop=True)
        middle = day.iloc[(SESSION_S - 3600) // 2 : (SESSION_S + 3600) // 2].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows.reset_index(drop=True), middle)
    assert info.rows_used == len(frame) == 2 * budget
    assert info.rows_available == len(everything)
    assert info.days_used == info.days_available == {"BTC-USD": DAYS, "ETH-USD": DAYS}


def test_a_single_file_follows_the_same_rule(store, tmp_path):
    budget = DAYS * 300
    from_store, _ = load_frame([store / "features"], tmp_path, max_rows_per_product=budget)
    from_file, _ = load_frame([store / "features.parquet"], tmp_path, max_rows_per_product=budget)
    pd.testing.assert_frame_equal(from_store, from_file)


def test_a_sample_drawn_where_the_days_are_read_is_the_sample_of_the_whole(store, tmp_path):
    everything, whole = load_frame([store / "features"], tmp_path)
    frame, info = load_frame([store / "features"], tmp_path, sample_rows=1000)
    picked = sample_positions(len(everything), 1000)
    pd.testing.assert_frame_equal(frame, everything.iloc[picked].reset_index(drop=True))
    assert info.rows_used == whole.rows_used == len(everything)
    assert (info.start, info.end) == (whole.start, whole.end)
    assert info.start == everything["ts"].min().isoformat()
    assert info.end == everything["ts"].max().isoformat()


def test_only_the_columns_asked_for(store, tmp_path):
    columns = ["product_id", "ts", "fwd_vol_60"]
    frame, _ = load_frame([store / "features.parquet"], tmp_path, columns=columns)
    everything = load_dataset(store / "features.parquet")
    pd.testing.assert_frame_equal(frame, everything[columns])


def test_a_total_budget_is_shared_equally_by_the_products(store, tmp_path):
    total = 2 * DAYS * 3600  # two products: 3600 rows a day each
    by_total, info = load_frame(
        [store / "features"], tmp_path, max_rows_per_product=DAYS * 3900, max_rows=total
    )
    by_product, _ = load_frame([store / "features"], tmp_path, max_rows_per_product=DAYS * 3600)
    pd.testing.assert_frame_equal(by_total, by_product)
    assert info.rows_used == len(by_total) == total
    assert (info.max_rows, info.max_rows_per_product) == (total, DAYS * 3900)
    assert info.product_budget == DAYS * 3600
