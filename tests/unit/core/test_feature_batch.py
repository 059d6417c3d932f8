"""The engine's batch entry point: columns of ticks give what one tick at a time gives.

``process_batch`` and ``process`` share the compiled kernel and the per-product state; these tests
check what lies around it: the split by product, state kept across calls of any size, rings grown
in the middle of a batch, refusals marked per input, and the feature record's cached time text.
"""

from __future__ import annotations

import functools
import math
import random
import subprocess
import sys

import numpy as np
import pytest

from tasks.core import feature_kernel
from tasks.core.features import (
    FEATURE_NAMES,
    OUTCOMES,
    EngineConfig,
    FeatureEngine,
    TickColumns,
    record_ts,
)
from tasks.core.messages import MessageError, Tick
from tasks.core.timeutil import format_ts

T0 = 1_765_000_000.0


def mixed_stream(n: int, seed: int) -> list[Tick]:
    """Three products at about 20 ticks/s, with gaps, late ticks, duplicates, sequence jumps,
    ticks without a book or quantities, and a few out of the engine's bounds."""
    rng = random.Random(seed)
    mids = {"BTC-USD": 90_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0}
    products = list(mids)
    ts, sequences, ticks = T0, {}, []
    for i in range(n):
        product = rng.choice(products)
        ts += rng.expovariate(20.0) if rng.random() > 0.002 else rng.uniform(20.0, 60.0)
        tick_ts = ts - (rng.uniform(0.0, 4.0) if rng.random() < 0.02 else 0.0)
        mid = mids[product] = mids[product] * math.exp(rng.gauss(0.0, 3e-4))
        source = rng.choice("ab") if rng.random() < 0.99 else f"s{i % 90}"
        seq = sequences[source] = sequences.get(source, 0) + 1
        if rng.random() < 0.02:
            seq -= rng.randint(1, 5)
        if rng.random() < 0.002:
            seq += 10**12
        half = mid * 1e-4 * rng.randint(0, 3)
        bid, ask = (mid - half, mid + half) if rng.random() > 0.05 else (math.nan, math.nan)
        if rng.random() < 0.001:
            bid, ask = 3 * mid, mid  # a negative spread: out of bounds
        quantities = (rng.uniform(0, 2), rng.uniform(0, 2))
        if rng.random() < 0.1:
            quantities = (math.nan, math.nan)
        ticks.append(Tick(product, tick_ts, source, seq, 0, mid, bid, ask, *quantities, 1.0))
    return ticks


def one_at_a_time(engine: FeatureEngine, ticks: list[Tick]) -> list:
    rows = []
    for tick in ticks:
        try:
            rows.append(engine.process(tick))
        except MessageError as exc:
            rows.append(str(exc))
    return rows


def in_batches(engine: FeatureEngine, ticks: list[Tick], sizes: list[int]) -> list:
    """The batch results, as ``one_at_a_time`` gives them: (ts, segment, values) or None, or
    the error text of a tick out of bounds."""
    rows, start = [], 0
    for size in sizes:
        columns = TickColumns.from_ticks(ticks[start : start + size])
        batch = engine.process_batch(columns)
        for i in range(len(columns)):
            if batch.taken[i]:
                rows.append((batch.ts[i], batch.segment[i], batch.values[i].tobytes()))
            elif OUTCOMES[batch.status[i]] == "out_of_bounds":
                rows.append(str(batch.out_of_bounds_error(i, columns.record_id(i))))
            else:
                rows.append(None)
        start += size
    assert start >= len(ticks)
    return rows


def as_comparable(rows: list) -> list:
    return [
        (row.ts, row.segment, np.array(row.values).tobytes()) if hasattr(row, "values") else row
        for row in rows
    ]


def test_batches_of_any_size_give_the_rows_and_counts_of_one_tick_at_a_time():
    ticks = mixed_stream(6_000, seed=1)
    single = FeatureEngine()
    expected = as_comparable(one_at_a_time(single, ticks))
    rng = random.Random(2)
    sizes = [rng.choice([1, 2, 7, 300, 2_500]) for _ in range(len(ticks))]
    batched = FeatureEngine()
    assert in_batches(batched, ticks, sizes) == expected
    assert batched.stats == single.stats
    outcomes = single.stats.as_dict()
    assert all(outcomes[name] for name in outcomes)  # the stream exercises every rule
    assert any(isinstance(row, str) for row in expected)  # and the bounds


def test_rings_grown_mid_batch_keep_every_row(monkeypatch):
    """Rings that start with room for two entries grow many times; nothing may change."""
    ticks = mixed_stream(4_000, seed=3)
    expected = in_batches(FeatureEngine(), ticks, [len(ticks)])
    tiny = functools.partial(feature_kernel.new_state, tick_capacity=2, second_capacity=2)
    monkeypatch.setattr(feature_kernel, "new_state", tiny)
    engine = FeatureEngine()
    assert in_batches(engine, ticks, [len(ticks)]) == expected
    state = engine._states["BTC-USD"]
    assert state[2].shape[0] >= 512 and state[4].shape[0] >= 64  # it did grow


def test_a_tick_out_of_bounds_is_marked_and_changes_nothing():
    ticks = mixed_stream(500, seed=4)
    clean = [t for t in ticks if not (t.best_bid > t.best_ask)]
    bad = Tick("BTC-USD", T0 + 10, "a", 10**6, 0, 100.0, 101.0, 100.0, 1.0, 1.0, 1.0)
    engine = FeatureEngine()
    rows = in_batches(engine, [*clean[:250], bad, *clean[250:]], [len(clean) + 1])
    assert rows.pop(250).startswith(f"tick {bad.record_id} out of the engine's bounds: spread")
    assert rows == in_batches(FeatureEngine(), clean, [len(clean)])
    with pytest.raises(MessageError, match="out of the engine's bounds"):
        engine.process(bad)


def test_products_keep_their_own_state_across_calls():
    ticks = mixed_stream(3_000, seed=5)
    config = EngineConfig(max_sources_per_product=2)
    expected = in_batches(FeatureEngine(config), ticks, [len(ticks)])
    by_product = FeatureEngine(config)
    # each call holds one product's next ticks, as a partitioned stream delivers them
    rows: list = [None] * len(ticks)
    for product in ("ETH-USD", "BTC-USD", "SOL-USD"):
        positions = [i for i, t in enumerate(ticks) if t.product_id == product]
        for start in range(0, len(positions), 97):
            chunk = positions[start : start + 97]
            results = in_batches(by_product, [ticks[i] for i in chunk], [len(chunk)])
            for i, row in zip(chunk, results, strict=True):
                rows[i] = row
    assert rows == expected


@pytest.mark.parametrize("seed", range(3))
def test_record_time_text_is_format_ts(seed):
    rng = random.Random(seed)
    epochs = [T0 + rng.uniform(0, 86_400) for _ in range(20_000)]
    epochs += [T0 + k + (2 * rng.randint(0, 999_999) + 1) / 2e6 for k in range(2_000)]  # halves
    epochs += [math.nextafter(T0 + k + 1, 0.0) for k in range(100)]  # rounds up to the next second
    epochs += [-rng.uniform(0, 1e6) for _ in range(500)]
    assert [record_ts(e) for e in epochs] == [format_ts(e) for e in epochs]


def test_the_kernel_and_the_engine_agree_on_codes_and_columns():
    assert len(FEATURE_NAMES) == feature_kernel.N_FEATURES
    assert len(FeatureEngine()._kernel_config) == feature_kernel.N_CONFIG
    codes = {
        "taken": feature_kernel.TAKEN,
        "late_adjusted": feature_kernel.TAKEN_LATE,
        "gap_restarted": feature_kernel.TAKEN_AFTER_GAP,
        "duplicate": feature_kernel.DUPLICATE,
        "late_dropped": feature_kernel.LATE_DROPPED,
        "sequence_jump": feature_kernel.SEQUENCE_JUMP,
        "out_of_bounds": feature_kernel.OUT_OF_BOUNDS_MID,
    }
    assert {name: OUTCOMES.index(name) for name in codes} == codes
    assert OUTCOMES[feature_kernel.OUT_OF_BOUNDS_TERMS] == "out_of_bounds"


def test_the_feature_names_come_without_the_compiler():
    """numba takes a second to import: only an engine that runs needs it."""
    code = "import sys, tasks.core.features; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
