"""The consumer loop's metrics: a batch's records observed in one step add what observing each
would."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from tasks.io.consumer_loop import observe_many

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(BUCKETS), st.floats(0.0, 20.0, allow_nan=False)),
            st.integers(1, 50),
        ),
        max_size=6,
    )
)
def test_observing_many_at_once_adds_what_observing_each_adds(batches):
    one_by_one = Histogram("a", "a", buckets=BUCKETS, registry=CollectorRegistry())
    at_once = Histogram("a", "a", buckets=BUCKETS, registry=CollectorRegistry())
    for value, count in batches:
        for _ in range(count):
            one_by_one.observe(value)
        observe_many(at_once, value, count)
    expected, got = samples(one_by_one), samples(at_once)
    total, expected_total = got.pop(("a_sum", "")), expected.pop(("a_sum", ""))
    assert got == expected  # the buckets and the count, exactly
    assert math.isclose(total, expected_total, rel_tol=1e-9, abs_tol=1e-12)
