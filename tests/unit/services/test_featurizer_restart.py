"""The featurizer's warm-up rule with the real engine: features after a simulated restart are
bit-identical to an uninterrupted run's, wherever the restart falls. Pure (no broker)."""

from __future__ import annotations

import random

import pytest
from test_features import arrival_stream, same_row

from tasks.core.features import EngineConfig, FeatureEngine
from tasks.services.featurizer import DEFAULT_LOOKBACK_S, _Partition


def restarted_rows(ticks, resume_at: int, until: int, first_guess: int, config: EngineConfig):
    """What a featurizer restarted at ``resume_at`` produces up to ``until``: it warms up from
    ``first_guess`` records back, re-reading from four times further back while short."""
    start = max(0, resume_at - first_guess)
    while True:
        partition = _Partition(FeatureEngine(config), resume_at, low=0, start=start, live=False)
        for tick in ticks[start:resume_at]:
            partition.warm(partition.engine.process(tick), tick.ts, tick.product_id)
        if partition.covered(DEFAULT_LOOKBACK_S):
            break
        start = max(0, resume_at - 4 * (resume_at - start))
    return start, [partition.engine.process(tick) for tick in ticks[resume_at:until]]


@pytest.mark.parametrize("seed", [3, 4])
def test_features_after_a_warm_up_equal_an_uninterrupted_runs(seed):
    config = EngineConfig()
    # records in event-time order up to the late tolerance, as the featurizer assumes
    ticks = arrival_stream(seed, max_late=config.late_tolerance_s)
    full = FeatureEngine(config)
    rows = [full.process(t) for t in ticks]
    rng = random.Random(seed)
    rewound = 0
    for resume_at in rng.sample(range(1, len(ticks)), 40):
        first_guess = rng.choice((1, 50, 500, 5000))
        until = resume_at + 1000
        start, got = restarted_rows(ticks, resume_at, until, first_guess, config)
        rewound += start < resume_at - first_guess
        bad = [i for i, row in enumerate(got, resume_at) if not same_row(rows[i], row)]
        assert bad == [], f"restart at {resume_at} (warm-up from {start}): rows {bad[:5]} differ"
    assert rewound > 0
