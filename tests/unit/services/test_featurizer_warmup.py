"""When is a featurizer warm-up long enough to rebuild the engine's windows? Pure logic."""

from __future__ import annotations

from tasks.core.features import EngineConfig, FeatureEngine
from tasks.core.messages import Tick
from tasks.services.featurizer import DEFAULT_LOOKBACK_S, _Partition

LOOKBACK = DEFAULT_LOOKBACK_S


def tick(product: str, ts: float, seq: int) -> Tick:
    return Tick(product, ts, "src", seq, 0, 100.0, 99.5, 100.5, 1.0, 2.0, 1e3)


def warm(partition: _Partition, ticks: list[Tick]) -> _Partition:
    for t in ticks:
        partition.warm(partition.engine.process(t), t.ts, t.product_id)
    return partition


def partition(start: int = 100, low: int = 0) -> _Partition:
    engine = FeatureEngine(EngineConfig(max_gap_s=30.0))
    return _Partition(engine, resume_at=1000, low=low, start=start, live=False)


def steady(product: str, start: float, seconds: float, step: float = 1.0) -> list[Tick]:
    """A tick every ``step`` seconds; sequence numbers follow event time."""
    return [tick(product, start + i * step, int(start) + i) for i in range(int(seconds / step) + 1)]


def test_a_warm_up_shorter_than_the_lookback_is_not_enough():
    assert not warm(partition(), steady("BTC-USD", 0.0, LOOKBACK - 20)).covered(LOOKBACK)


def test_a_warm_up_spanning_the_lookback_is_enough():
    assert warm(partition(), steady("BTC-USD", 0.0, LOOKBACK)).covered(LOOKBACK)


def test_reading_from_the_partitions_first_offset_is_always_enough():
    short = steady("BTC-USD", 0.0, 10)
    assert warm(partition(start=0, low=0), short).covered(LOOKBACK)


def test_a_gap_restart_inside_the_warm_up_is_enough():
    ticks = steady("BTC-USD", 0.0, 20) + steady("BTC-USD", 100.0, 20)  # 80 s silence
    assert warm(partition(), ticks).covered(LOOKBACK)


def test_every_product_must_be_covered():
    ticks = sorted(
        steady("BTC-USD", 0.0, LOOKBACK) + steady("ETH-USD", LOOKBACK - 20, 20),
        key=lambda t: t.ts,
    )
    # ETH-USD's first tick came 290 s after the warm-up's first: it started a segment there
    assert warm(partition(), ticks).covered(LOOKBACK)
    ticks = sorted(
        steady("BTC-USD", 0.0, LOOKBACK) + steady("ETH-USD", 10.0, 200),
        key=lambda t: t.ts,
    )
    # ETH-USD ticked 10 s after the start: it may have had ticks just before, so it is short
    assert not warm(partition(), ticks).covered(LOOKBACK)
