"""Parity: each tick's features from `cryptovol featurize` via the broker equal the batch path's."""

from __future__ import annotations

import pytest
from featurize_support import (
    batch_rows,
    compare_with_batch,
    feature_records,
    finish,
    produce,
    raw_ticks,
    read_topic,
    start_featurize,
    tick_records,
    write_recording,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def replay_and_featurize(settings, paths, tmp_path) -> tuple[dict, list[dict]]:
    """Produce the ticks onto the raw topic, run the featurizer until idle, read features back."""
    produced = produce(settings, tick_records(raw_ticks(paths)))
    proc = start_featurize(settings, "--max-idle-seconds", "3", log_path=tmp_path / "featurize.log")
    stats = finish(proc)
    assert stats["ticks_in"] == produced
    records = feature_records(read_topic(settings, settings.features_topic))
    return stats, records


def assert_parity(paths, settings, tmp_path) -> int:
    batch = batch_rows(paths)
    stats, records = replay_and_featurize(settings, paths, tmp_path)
    # Exact: the same engine on the same ticks in the same per-product order.
    assert compare_with_batch(batch, records) == []
    assert len(records) == len(batch) == stats["features_out"]  # a clean run repeats nothing
    assert stats["dlq"] == stats["errors"] == 0
    return len(records)


def test_parity_on_a_generated_recording(kafka_settings, tmp_path):
    recording = write_recording(tmp_path / "sim.ndjson.gz", ticks=3000, seconds=900, seed=7)
    assert assert_parity([recording], kafka_settings, tmp_path) > 2900


@pytest.mark.shared_data
def test_parity_on_real_recordings(shared_recordings, kafka_settings, tmp_path):
    # Two consecutive files of one session (3,694 messages), 31 s apart: two sequence spaces and
    # a window restart at the gap.
    paths = [
        p
        for p in shared_recordings
        if p.name.startswith(("BTC-USD_20251206_0131", "BTC-USD_20251206_0136"))
    ]
    assert len(paths) == 2
    assert assert_parity(paths, kafka_settings, tmp_path) == 3694
