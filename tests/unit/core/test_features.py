"""The feature engine against a naive recomputation, its handling of awkward input, and restarts
mid-stream (bit-identical rows after the documented look-back)."""

from __future__ import annotations

import bisect
import json
import math
import random
import subprocess
import sys

import pytest

from tasks.core.features import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    REGIME_SHORT_WINDOWS_S,
    REGIME_WINDOW_S,
    WINDOWS_S,
    EngineConfig,
    FeatureEngine,
    FeatureRow,
    restart_lookback_s,
)
from tasks.core.messages import MessageError, Tick

NAN = math.nan
T0 = 1_764_999_936.25


def make_tick(
    ts,
    mid=100.0,
    *,
    product="BTC-USD",
    source="s",
    seq=0,
    index=0,
    spread=0.02,
    bid_qty=1.0,
    ask_qty=2.0,
    book=True,
    price=None,
) -> Tick:
    bid, ask = (mid - spread / 2, mid + spread / 2) if book else (NAN, NAN)
    return Tick(
        product,
        ts,
        source,
        seq,
        index,
        mid if price is None else price,
        bid,
        ask,
        bid_qty,
        ask_qty,
        1000.0,
    )


def random_stream(
    rng: random.Random,
    n: int,
    *,
    rate: float = 5.0,
    product: str = "BTC-USD",
    gap_rate: float = 0.004,
    max_late: float = 4.0,
):
    """Ticks with a volatility regime shift, gaps, missing books and quantities, late ticks."""
    ticks = []
    ts, mid = T0, 90_000.0
    for seq in range(n):
        vol = 2e-2 if seq < n // 3 else 1e-7  # large then tiny returns: stresses running sums
        roll = rng.random()
        if roll < gap_rate:
            ts += 45.0  # longer than max_gap_s: windows restart
        elif roll < gap_rate + 0.006:
            ts += 12.0
        ts += rng.expovariate(rate)
        late = ts - rng.uniform(0.0, max_late) if rng.random() < 0.03 else ts
        if rng.random() < 0.3:
            mid *= math.exp(rng.gauss(0.0, vol))
        book = rng.random() > 0.05
        qty = rng.random() > 0.1
        ticks.append(
            make_tick(
                late,
                mid,
                product=product,
                seq=seq,
                spread=0.01 * rng.randint(1, 50),
                bid_qty=rng.uniform(0, 3) if qty else NAN,
                ask_qty=rng.uniform(0, 3) if qty else NAN,
                book=book,
            )
        )
    return ticks


class NaiveReference:
    """Every feature recomputed from scratch over the accepted ticks of the current segment."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.segment: list[tuple[float, float, float, float]] = []  # (ts, mid, spread, imbalance)
        self.latest = NAN

    def accept(self, tick: Tick) -> float | None:
        ts = tick.ts
        if ts < self.latest:
            if self.latest - ts > self.config.late_tolerance_s:
                return None
            ts = self.latest
        elif ts - self.latest > self.config.max_gap_s:
            self.segment = []
        self.latest = ts
        book = not math.isnan(tick.best_bid)
        mid = (tick.best_bid + tick.best_ask) / 2 if book else tick.price
        spread = 1e4 * (tick.best_ask - tick.best_bid) / mid if book else NAN
        depth = tick.best_bid_quantity + tick.best_ask_quantity
        imb = (tick.best_bid_quantity - tick.best_ask_quantity) / depth if depth > 0 else NAN
        self.segment.append((ts, mid, spread, imb))
        return ts

    def features(self) -> dict[str, float]:
        seg = self.segment
        times = [x[0] for x in seg]
        mids = [x[1] for x in seg]
        t, mid = seg[-1][0], seg[-1][1]
        out: dict[str, float] = {}
        for w in WINDOWS_S:
            start = bisect.bisect_right(times, t - w)  # first tick inside (t - w, t]
            window = seg[start:]
            returns = [math.log(mids[i] / mids[i - 1]) for i in range(max(start, 1), len(seg))]
            if returns:
                base = start - 1 if start > 0 else 0
                log_ret = math.log(mid / mids[base])
                elapsed = t - times[base]
                out[f"log_return_{w}"] = log_ret
                out[f"realized_vol_{w}"] = math.sqrt(sum(r * r for r in returns))
                out[f"price_velocity_{w}"] = 1e4 * log_ret / elapsed if elapsed >= 1 else NAN
            else:
                for name in ("log_return", "realized_vol", "price_velocity"):
                    out[f"{name}_{w}"] = NAN
            wmids = [x[1] for x in window]
            out[f"range_bps_{w}"] = 1e4 * math.log(max(wmids) / min(wmids))
            spreads = [x[2] for x in window if not math.isnan(x[2])]
            imbs = [x[3] for x in window if not math.isnan(x[3])]
            out[f"spread_bps_mean_{w}"] = sum(spreads) / len(spreads) if spreads else NAN
            out[f"imbalance_mean_{w}"] = sum(imbs) / len(imbs) if imbs else NAN
            out[f"tick_intensity_{w}"] = len(window) / w
            if w == 60:
                out["n"] = float(len(window))
                m = len(returns)
                out["ret_mean"] = sum(returns) / m if m else NAN
                if m > 1:
                    mean = sum(returns) / m
                    out["ret_std"] = math.sqrt(sum((r - mean) ** 2 for r in returns) / (m - 1))
                else:
                    out["ret_std"] = NAN
        out["spread_bps"] = seg[-1][2]
        out["imbalance"] = seg[-1][3]
        first_second = math.ceil(times[0])
        last_complete = math.ceil(t) - 1
        for w in (60, 300):
            if last_complete < first_second + 1:
                out[f"realized_vol_1s_{w}"] = NAN
                continue
            total = 0.0
            for s in range(max(first_second + 1, math.floor(t - w) + 1), last_complete + 1):
                now = mids[bisect.bisect_right(times, s, hi=len(seg) - 1) - 1]
                before = mids[bisect.bisect_right(times, s - 1, hi=len(seg) - 1) - 1]
                total += math.log(now / before) ** 2
            out[f"realized_vol_1s_{w}"] = math.sqrt(total)
        for short in (30, 60):
            v_short, v_long = out[f"realized_vol_{short}"], out["realized_vol_300"]
            ok = v_long > 0 and not math.isnan(v_short)
            ratio = (v_short / math.sqrt(short)) / (v_long / math.sqrt(300)) if ok else NAN
            out[f"vol_ratio_{short}_300"] = ratio
        regime = seg[bisect.bisect_right(times, t - REGIME_WINDOW_S) :]
        covered = REGIME_WINDOW_S if times[0] <= t - REGIME_WINDOW_S else t - times[0]
        spreads = [x[2] for x in regime if not math.isnan(x[2])]
        level_spread = sum(spreads) / len(spreads) if spreads else NAN
        for w in REGIME_SHORT_WINDOWS_S:
            rate = out[f"tick_intensity_{w}"] / (len(regime) / covered) if covered >= w else NAN
            out[f"tick_intensity_ratio_{w}_{REGIME_WINDOW_S}"] = rate
            spread = out[f"spread_bps_mean_{w}"] / level_spread if level_spread > 0 else NAN
            out[f"spread_bps_ratio_{w}_{REGIME_WINDOW_S}"] = spread
        return out


def assert_close(got: dict[str, float], want: dict[str, float], where: str) -> None:
    for name in FEATURE_NAMES:
        a, b = got[name], want[name]
        if math.isnan(b):
            assert math.isnan(a), f"{where}: {name} = {a}, expected NaN"
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-15), f"{where}: {name}"


def test_feature_names_are_defined_once_and_include_the_contract():
    assert FEATURE_SET_VERSION
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for name in (
        "realized_vol_30",
        "realized_vol_60",
        "realized_vol_300",
        "ret_mean",
        "ret_std",
        "n",
    ):
        assert name in FEATURE_NAMES


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_match_a_naive_recompute(seed):
    rng = random.Random(seed)
    config = EngineConfig()
    engine = FeatureEngine(config)
    naive = NaiveReference(config)
    ticks = random_stream(rng, 3000)
    checked = 0
    for i, tick in enumerate(ticks):
        row = engine.process(tick)
        ts = naive.accept(tick)
        assert (row is None) == (ts is None)
        if row is None:
            continue
        assert row.ts == ts
        if i % 5 == 0 or i > len(ticks) - 50:
            assert_close(row.as_dict(), naive.features(), f"tick {i}")
            checked += 1
    assert checked > 500
    assert engine.stats.late_dropped > 0 and engine.stats.late_adjusted > 0
    assert engine.stats.gaps_restarted > 0


def entries_visited_per_tick(rate: float) -> float:
    engine = FeatureEngine()
    rng = random.Random(7)
    ts, mid, n = T0, 100.0, 20_000
    for seq in range(n):
        ts += 1.0 / rate
        mid *= math.exp(rng.gauss(0, 1e-4))
        engine.process(make_tick(ts, mid, seq=seq, bid_qty=rng.random(), ask_qty=rng.random()))
    return engine.entries_visited() / n


def test_work_per_tick_does_not_grow_with_the_window_population():
    sparse = entries_visited_per_tick(rate=5.0)  # about 1,500 ticks in the 300 s window
    dense = entries_visited_per_tick(rate=50.0)  # about 15,000 ticks in the 300 s window
    print(f"window entries visited per tick: {sparse:.1f} sparse, {dense:.1f} dense")
    assert dense < 30
    assert dense < 1.5 * sparse


def test_duplicates_are_ignored_and_a_new_source_is_a_new_sequence_space():
    engine = FeatureEngine()
    assert engine.process(make_tick(T0, source="a", seq=5)) is not None
    assert engine.process(make_tick(T0 + 1, source="a", seq=5)) is None
    assert engine.process(make_tick(T0 + 1, source="a", seq=4)) is None
    assert engine.process(make_tick(T0 + 1, source="a", seq=5, index=1)) is not None
    assert engine.process(make_tick(T0 + 2, source="b", seq=0)) is not None
    assert engine.process(make_tick(T0 + 3, source="b", seq=-1)) is not None  # no sequence number
    assert engine.process(make_tick(T0 + 3, source="b", seq=-1)) is not None
    assert engine.stats.duplicates == 2 and engine.stats.processed == 5


@pytest.mark.parametrize("absurd", [10**15, 2**53 - 1])
def test_one_absurd_sequence_number_costs_that_tick_alone(absurd):
    """Issue 15, item 1: a sequence number of 10^15 in a file counting from 0 made every later
    tick of the product a "duplicate" (the ~500 that followed were dropped without a word)."""
    span = 2 * (REGIME_WINDOW_S + 2) + 200  # ticks, 2 a second: past the longest window
    clean = [make_tick(T0 + 0.5 * i, 100.0 + 0.01 * i, seq=i) for i in range(span)]
    poisoned = list(clean)
    poisoned[100] = make_tick(T0 + 50.0, 101.0, seq=absurd)
    want = FeatureEngine()
    expected = [want.process(t) for t in clean]
    engine = FeatureEngine()
    rows = [engine.process(t) for t in poisoned]
    assert rows[100] is None
    assert engine.stats.as_dict() == {
        **want.stats.as_dict(),
        "processed": span - 1,
        "sequence_jumps": 1,
    }
    # every other tick gives its row; once the windows forget the missing tick (the longest
    # window and the second of the 1-s grid after it), the very same bits as the clean run
    assert all(row is not None for i, row in enumerate(rows) if i != 100)
    forgotten = 100 + 2 * (REGIME_WINDOW_S + 2)
    assert all(same_row(a, b) for a, b in zip(rows[forgotten:], expected[forgotten:], strict=True))


def test_an_absurd_first_sequence_number_does_not_swallow_its_source():
    """The first tick of a source sets its mark; ticks far behind an absurd mark are no
    re-sent duplicates (those lie within the rate of the time between them)."""
    engine = FeatureEngine()
    assert engine.process(make_tick(T0, seq=10**15)) is not None
    rows = [engine.process(make_tick(T0 + 1 + i, seq=i)) for i in range(5)]
    assert all(row is not None for row in rows)
    assert engine.process(make_tick(T0 + 4, seq=3)) is None  # a re-sent one still is a duplicate
    assert engine.stats.duplicates == 1 and engine.stats.sequence_jumps == 0


def test_a_real_sequence_advance_after_a_long_silence_is_taken():
    engine = FeatureEngine(EngineConfig(max_sequence_rate=100.0))
    assert engine.process(make_tick(T0, seq=0)) is not None
    assert engine.process(make_tick(T0 + 0.5, seq=1000)) is None  # 1000 in half a second
    assert engine.process(make_tick(T0 + 60.0, seq=5000)) is not None  # 5000 in a minute
    assert engine.stats.sequence_jumps == 1


@pytest.mark.parametrize(
    "tick",
    [
        make_tick(T0 + 1, 1e308, spread=0.0),
        make_tick(T0 + 1, 1e-320, spread=0.0),
        make_tick(T0 + 1, math.inf, spread=0.0),
        make_tick(T0 + 1, book=False, price=0.0),
        make_tick(T0 + 1, spread=-0.5),  # crossed
        make_tick(T0 + 1, bid_qty=1e308, ask_qty=math.inf),
        make_tick(math.nan),
    ],
    ids=["huge", "subnormal", "inf", "zero-price", "crossed", "inf-quantity", "nan-time"],
)
def test_out_of_bounds_terms_are_refused_before_they_reach_the_window_sums(tick):
    """Issue 15, item 2: an infinite mid stayed in the window sums and every later tick of the
    product failed for 300 s. Ticks that bypass to_tick (which refuses these inputs) are refused
    by the engine too, with no state changed."""
    ticks = [make_tick(T0 + 0.5 * i, 100.0 + 0.01 * i, seq=i) for i in range(40)]
    want = FeatureEngine()
    expected = [want.process(t) for t in ticks]
    engine = FeatureEngine()
    rows = [engine.process(t) for t in ticks[:10]]
    with pytest.raises(MessageError, match="out of the engine's bounds"):
        engine.process(tick)
    rows += [engine.process(t) for t in ticks[10:]]
    assert all(same_row(a, b) for a, b in zip(rows, expected, strict=True))
    assert engine.stats == want.stats


def test_late_ticks_within_tolerance_take_the_latest_time_later_ones_are_dropped():
    engine = FeatureEngine(EngineConfig(late_tolerance_s=2.0))
    engine.process(make_tick(T0 + 10, seq=1))
    row = engine.process(make_tick(T0 + 8.5, 101.0, seq=2))
    assert row is not None and row.ts == T0 + 10
    assert row.as_dict()["n"] == 2.0
    assert engine.process(make_tick(T0 + 7.9, seq=3)) is None
    assert engine.stats.late_adjusted == 1 and engine.stats.late_dropped == 1


def test_windows_restart_after_a_gap():
    engine = FeatureEngine(EngineConfig(max_gap_s=30.0))
    for i in range(20):
        row = engine.process(make_tick(T0 + i, 100.0 + i, seq=i))
    assert row.as_dict()["n"] == 20.0 and row.segment == 0
    row = engine.process(make_tick(T0 + 19 + 30.5, 150.0, seq=20))
    values = row.as_dict()
    assert row.segment == 1 and engine.stats.gaps_restarted == 1
    assert values["n"] == 1.0
    assert math.isnan(values["realized_vol_300"]) and math.isnan(values["log_return_30"])
    row = engine.process(make_tick(T0 + 19 + 30.5 + 1, 151.5, seq=21))
    assert row.as_dict()["log_return_300"] == pytest.approx(math.log(151.5 / 150.0))


def test_missing_inputs_give_nan_not_zero():
    engine = FeatureEngine()
    engine.process(make_tick(T0, 100.0, seq=0, bid_qty=NAN, ask_qty=NAN, book=False))
    row = engine.process(make_tick(T0 + 1, 101.0, seq=1, bid_qty=NAN, ask_qty=NAN, book=False))
    values = row.as_dict()
    for name in ("spread_bps", "imbalance", "spread_bps_mean_30", "imbalance_mean_300"):
        assert math.isnan(values[name]), name
    assert values["log_return_30"] == pytest.approx(math.log(1.01))  # mid falls back to price
    assert math.isnan(values["ret_std"])  # one return has no sample deviation
    assert math.isnan(values["realized_vol_1s_60"])  # no complete second yet
    first = FeatureEngine().process(make_tick(T0, seq=0))
    assert math.isnan(first.as_dict()["realized_vol_30"])


def test_flat_prices_give_exact_zero_volatility_after_moves_leave_the_window():
    engine = FeatureEngine()
    rng = random.Random(5)
    ts = T0
    for seq in range(400):
        ts += 0.5
        mid = 100.0 * math.exp(rng.gauss(0, 0.01)) if seq < 100 else 100.0
        row = engine.process(make_tick(ts, mid, seq=seq))
    values = row.as_dict()
    assert values["realized_vol_30"] == 0.0 and values["realized_vol_60"] == 0.0
    assert values["realized_vol_1s_60"] == 0.0 and values["range_bps_30"] == 0.0


def test_interleaved_products_match_separate_engines():
    rng = random.Random(11)
    a = random_stream(rng, 400, product="BTC-USD")
    b = random_stream(rng, 400, product="ETH-USD")
    merged = sorted(a + b, key=lambda t: t.ts)
    together = FeatureEngine()
    rows = {t.record_id: together.process(t) for t in merged}
    for stream in (a, b):
        alone = FeatureEngine()
        for tick in sorted(stream, key=lambda t: t.ts):
            expected = alone.process(tick)
            got = rows[tick.record_id]
            assert (got is None) == (expected is None)
            if got is not None:
                assert got.ts == expected.ts
                assert got.values == pytest.approx(expected.values, nan_ok=True)


def test_record_is_json_with_null_for_missing():
    engine = FeatureEngine()
    row = engine.process(make_tick(T0, seq=3, source="conn-1"))
    record = row.to_record()
    text = json.dumps(record, allow_nan=False)
    assert record["feature_set_version"] == FEATURE_SET_VERSION
    assert record["record_id"] == "BTC-USD|conn-1|3|0" and record["event_ts"] == T0
    assert record["ts"].endswith("Z") and list(record["features"]) == list(FEATURE_NAMES)
    assert record["features"]["realized_vol_30"] is None
    assert "NaN" not in text


def arrival_stream(seed: int, *, max_late: float = 4.0) -> list[Tick]:
    """Two products interleaved as they would arrive (late ticks stay late), with some ticks sent
    again a little later (a producer's retry: duplicates); few gaps, so windows live long."""
    rng = random.Random(seed)
    keyed = []
    for product in ("BTC-USD", "ETH-USD"):
        latest = -math.inf
        stream = random_stream(rng, 4000, product=product, gap_rate=5e-4, max_late=max_late)
        for tick in stream:
            latest = max(latest, tick.ts)
            keyed.append((latest, tick))
    keyed.sort(key=lambda pair: pair[0])  # stable: each product keeps its order
    ticks: list[Tick] = []
    for _arrival, tick in keyed:
        ticks.append(tick)
        if rng.random() < 0.01:
            ticks.extend(ticks[-rng.randint(1, 5) :])
    return ticks


def same_row(a: FeatureRow | None, b: FeatureRow | None) -> bool:
    """Bit-identical rows (NaN equals NaN); the engine's own restart counter aside."""
    if a is None or b is None:
        return a is b
    return (
        (a.product_id, a.record_id, a.ts) == (b.product_id, b.record_id, b.ts)
        and len(a.values) == len(b.values)
        and all(x == y or (x != x and y != y) for x, y in zip(a.values, b.values, strict=True))
    )


def restart_from(ticks, rows, start, config):
    """Feed a fresh engine ``ticks[start:]``; the ticks whose rows differ from ``rows``, as
    (index, event time since t0 of its product: where restart_lookback_s counts from)."""
    latest: dict[str, float] = {}
    for row in rows[:start]:
        if row is not None:
            latest[row.product_id] = row.ts
    engine = FeatureEngine(config)
    t0: dict[str, float] = {}
    differing = []
    for i in range(start, len(ticks)):
        tick = ticks[i]
        if tick.product_id not in t0:
            before = latest.get(tick.product_id, -math.inf)
            too_late = before - tick.ts > config.late_tolerance_s
            t0[tick.product_id] = before if too_late else tick.ts
        row = engine.process(tick)
        if not same_row(rows[i], row):
            reference = rows[i] or row
            differing.append((i, reference.ts - t0[tick.product_id]))
    return differing


@pytest.mark.parametrize("seed", [1, 2])
def test_an_engine_started_mid_stream_gives_the_same_rows_after_the_lookback(seed):
    config = EngineConfig()
    lookback = restart_lookback_s(config)
    ticks = arrival_stream(seed)
    full = FeatureEngine(config)
    rows = [full.process(t) for t in ticks]
    assert full.stats.duplicates > 0 and full.stats.late_dropped > 0
    assert full.stats.gaps_restarted > 0
    end = max(t.ts for t in ticks)
    rng = random.Random(seed)
    starts = [i for i, t in enumerate(ticks) if t.ts + lookback + 60 < end]
    beyond_longest_window = 0
    for start in rng.sample(starts, 40):
        differing = restart_from(ticks, rows, start, config)
        after = [(i, when) for i, when in differing if when >= lookback]
        assert after == [], f"started at tick {start}: rows {after[:5]} differ"
        beyond_longest_window += any(when >= max(WINDOWS_S) for _i, when in differing)
    # the restarted engine did differ before, often for longer than the longest window
    assert beyond_longest_window > 0


def test_a_late_tick_then_a_silence_under_a_gap_needs_the_whole_lookback():
    # The restarted engine's first tick is 1.5 s late, so it takes the 29 s silence that follows
    # for a gap and restarts its windows; the uninterrupted engine does not. Their rows agree
    # only once the silence has left the longest window, 1 s later on the 1-second grid.
    config = EngineConfig(late_tolerance_s=2.0, max_gap_s=30.0)
    ticks = [make_tick(T0 + 0.5 * i, 100 + math.sin(i), seq=i) for i in range(400)]
    latest = ticks[-1].ts
    start = len(ticks)
    ticks.append(make_tick(latest - 1.5, 101.0, seq=start))
    ticks += [
        make_tick(latest + 29.0 + 0.5 * i, 100 + math.cos(i), seq=start + 1 + i) for i in range(800)
    ]
    full = FeatureEngine(config)
    rows = [full.process(t) for t in ticks]
    assert full.stats.late_adjusted == 1 and full.stats.gaps_restarted == 0
    differing = restart_from(ticks, rows, start, config)
    last = max(when for _i, when in differing)
    assert max(WINDOWS_S) + 29.0 < last < restart_lookback_s(config)


def test_pure_modules_import_no_io_library():
    code = (
        "import sys, tasks.core.features, tasks.core.labels\n"
        "banned = ('confluent_kafka', 'prefect', 'mlflow', 'websockets', 'bentoml',"
        " 'requests', 'httpx')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
