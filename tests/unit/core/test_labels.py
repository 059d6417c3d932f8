"""Labels: the 1-second grid, forward and trailing volatility, and the spike rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tasks.core.labels import (
    LabelSpec,
    add_label_columns,
    forward_realized_vol,
    second_grid,
    trailing_realized_vol,
)

T0 = 1_765_000_000  # a whole second


def ticks_frame(ts, mids, product="BTC-USD") -> pd.DataFrame:
    return pd.DataFrame({"product_id": product, "ts": np.asarray(ts, float), "mid": mids})


def random_walk(n: int, seed: int = 0, start: float = T0 + 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = start + np.arange(n) * 0.5
    mids = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    return ticks_frame(ts, mids)


def test_grid_takes_the_last_mid_at_or_before_each_second_and_splits_at_gaps():
    ts = [T0 + 0.5, T0 + 1.0, T0 + 1.0, T0 + 2.7, T0 + 14.0, T0 + 15.2]
    grid = second_grid(ticks_frame(ts, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert grid["second"].tolist() == [T0 + 1, T0 + 2, T0 + 14, T0 + 15]
    assert grid["mid"].tolist() == [3.0, 3.0, 5.0, 5.0]  # the later of two ticks at T0 + 1 wins
    assert grid["segment"].tolist() == [0, 0, 1, 1]  # 11.3 s without a tick splits
    assert grid["tick_row"].tolist() == [2, 2, 4, 4]


def naive_forward(mids: list[float], i: int, h: int) -> float:
    if i + h >= len(mids):
        return math.nan
    return math.sqrt(sum(math.log(mids[s] / mids[s - 1]) ** 2 for s in range(i + 1, i + h + 1)))


def test_forward_vol_matches_a_naive_sum_and_covers_t_exclusive_to_t_plus_h_inclusive():
    grid = second_grid(random_walk(1000, seed=3))
    mids = grid["mid"].tolist()
    fwd = forward_realized_vol(grid, 60)
    for i in range(0, len(grid), 7):
        want = naive_forward(mids, i, 60)
        if math.isnan(want):
            assert math.isnan(fwd.iloc[i])
        else:
            assert fwd.iloc[i] == pytest.approx(want, rel=1e-9)
    # a jump into second t + 60 counts, a jump into second t does not
    flat = [100.0] * 200
    flat[100] = 101.0
    grid = second_grid(ticks_frame(T0 + np.arange(200), flat))
    fwd = forward_realized_vol(grid, 60)
    assert fwd.iloc[39] == 0.0  # (39, 99]: before the jump
    assert fwd.iloc[40] == pytest.approx(math.log(101.0 / 100.0))  # (40, 100] holds the jump up
    assert fwd.iloc[100] == pytest.approx(math.log(101.0 / 100.0))  # (100, 160]: the way back
    assert fwd.iloc[101] == 0.0


def test_no_forward_label_across_a_gap_or_past_the_end():
    ts = np.concatenate([T0 + np.arange(100), T0 + 111 + np.arange(100)])  # an 12 s gap
    grid = second_grid(ticks_frame(ts, 100.0 + np.arange(200) * 0.01))
    fwd = forward_realized_vol(grid, 60)
    seg0 = grid["segment"] == 0
    assert fwd[seg0].notna().sum() == 100 - 60  # seconds 0..39 see 60 s ahead inside the segment
    assert fwd[seg0].iloc[40:].isna().all()
    assert fwd[~seg0].iloc[-60:].isna().all() and fwd[~seg0].iloc[:40].notna().all()
    # a gap of exactly 10 s does not split
    ts = np.concatenate([T0 + np.arange(50), T0 + 59 + np.arange(50)])
    assert second_grid(ticks_frame(ts, np.full(100, 100.0)))["segment"].nunique() == 1


def test_trailing_vol_uses_past_data_only():
    frame = random_walk(3000, seed=5)
    grid = second_grid(frame)
    trail = trailing_realized_vol(grid, 900, 60)
    cut = 1200
    changed = frame.copy()
    future = changed["ts"] > grid["second"].iloc[cut]
    changed.loc[future, "mid"] *= np.exp(np.random.default_rng(9).normal(0, 1e-2, future.sum()))
    trail_changed = trailing_realized_vol(second_grid(changed), 900, 60)
    pd.testing.assert_series_equal(trail.iloc[: cut + 1], trail_changed.iloc[: cut + 1])
    assert not np.allclose(trail.iloc[cut + 1 :], trail_changed.iloc[cut + 1 :])


def test_trailing_vol_scaling_and_warm_up():
    grid = second_grid(random_walk(4000, seed=6))
    mids = grid["mid"].to_numpy()
    r2 = np.diff(np.log(mids)) ** 2
    trail = trailing_realized_vol(grid, 900, 60)
    assert trail.iloc[:450].isna().all() and trail.iloc[450:].notna().all()
    assert trail.iloc[450] == pytest.approx(math.sqrt(r2[:450].sum() * 60 / 450), rel=1e-9)
    assert trail.iloc[1500] == pytest.approx(math.sqrt(r2[600:1500].sum() * 60 / 900), rel=1e-9)


def test_absolute_spec_fits_tau_on_the_given_rows_only():
    frame = pd.DataFrame({"fwd_vol_60": np.r_[np.arange(100.0), [np.nan], np.arange(100.0) * 10]})
    train = frame.iloc[:101]
    spec = LabelSpec().fit(train)
    assert spec.tau == pytest.approx(np.quantile(np.arange(100.0), 0.9))
    labels = spec.apply(frame)
    assert labels.iloc[:100].sum() == 10 and math.isnan(labels.iloc[100])
    assert set(labels.dropna().unique()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="tau"):
        LabelSpec().apply(frame)


def test_relative_spec_compares_with_k_times_trailing_vol():
    frame = pd.DataFrame(
        {"fwd_vol_60": [1.0, 2.0, 3.0, 1.0, 5.0], "trail_vol_900": [1.0, 1.0, np.nan, 0.0, 2.0]}
    )
    spec = LabelSpec(mode="relative", k=2.0)
    assert spec.fit(frame) is spec
    labels = spec.apply(frame)
    assert labels.iloc[0] == 0.0 and labels.iloc[1] == 1.0 and labels.iloc[4] == 1.0
    assert math.isnan(labels.iloc[2]) and math.isnan(labels.iloc[3])


def test_spec_round_trips_through_json():
    spec = LabelSpec(quantile=0.95).fit(pd.DataFrame({"fwd_vol_60": np.linspace(0, 1, 21)}))
    again = LabelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.tau == pytest.approx(0.95)
    with pytest.raises(ValueError, match="unknown"):
        LabelSpec.from_dict({"mode": "absolute", "colour": "red"})
    with pytest.raises(ValueError, match="mode"):
        LabelSpec(mode="sideways")


def test_label_columns_per_product():
    a = random_walk(400, seed=1)
    b = random_walk(300, seed=2).assign(product_id="ETH-USD")
    grid = add_label_columns(second_grid(pd.concat([a, b], ignore_index=True)))
    assert set(grid["product_id"]) == {"BTC-USD", "ETH-USD"}
    for _product, rows in grid.groupby("product_id"):
        assert rows["fwd_vol_60"].iloc[-60:].isna().all()
        assert rows["fwd_vol_60"].iloc[:-60].notna().all()
        assert rows["second"].diff().dropna().eq(1).all()
