"""`kill -9` of `cryptovol featurize` mid-stream, then a restart: no tick loses its features."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import defaultdict

import pytest
from featurize_support import (
    batch_rows,
    compare_with_batch,
    feature_records,
    finish,
    mismatches,
    produce,
    raw_ticks,
    read_topic,
    start_featurize,
    stream_values,
    tick_records,
    write_recording,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def warm_spans(log_path) -> list[int]:
    """The records each partition's final warm-up spanned, from the featurizer's log ("partition
    P warm after N records"): ``warmup_ticks`` also counts the re-reads of warm-ups that turned
    out short, so it can exceed the history itself."""
    spans = re.findall(r"partition \d+ warm after (\d+) records", log_path.read_text())
    return [int(n) for n in spans]


def test_kill_9_mid_stream_then_restart_loses_nothing(kafka_settings, tmp_path):
    settings = kafka_settings
    # No gap: a window restart inside the warm-up would make the restart exact by itself. An hour,
    # so the kill (half way) comes well after the engine's look-back: the warm-up then re-reads
    # part of the history, not all of it.
    recording = write_recording(
        tmp_path / "sim.ndjson.gz", ticks=12000, seconds=3600, seed=11, gap_at=None
    )
    records = tick_records(raw_ticks([recording]))
    batch = batch_rows([recording])
    log_path = tmp_path / "featurize.log"

    # A third of the stream is waiting; the rest arrives while the featurizer runs. Small batches
    # and a short first warm-up guess, so the restart has to rewind to span the engine's
    # look-back (935 s), and re-reads from the middle of the partitions.
    first = len(records) // 3
    produce(settings, records[:first])
    options = ("--batch-size", "50", "--warmup-records", "250")
    proc = start_featurize(settings, *options, log_path=log_path)
    rest = threading.Thread(
        target=produce, args=(settings, records[first:]), kwargs={"rate_per_s": 400}
    )
    rest.start()
    try:
        seen = read_topic(
            settings,
            settings.features_topic,
            done=lambda messages: len(messages) >= len(records) // 2,
            quiet_s=30,
        )
        assert len(seen) < len(records), "the featurizer finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        rest.join(60)

    restarted = start_featurize(settings, *options, "--max-idle-seconds", "3", log_path=log_path)
    stats = finish(restarted)
    # It resumed from the committed offsets, rebuilding engine state from earlier records.
    assert 0 < stats["ticks_in"] < len(records)
    assert stats["rewinds"] > 0
    assert 0 < max(warm_spans(log_path)) < len(seen)  # not all the history before the kill

    # Everything is on the topic; duplicates make it longer than the batch: read until quiet.
    out = feature_records(read_topic(settings, settings.features_topic, quiet_s=5))
    # Every tick's features at least once, each bit-identical to the batch path's, and so are
    # the duplicates of the records produced before the kill but not committed.
    assert compare_with_batch(batch, out) == []
    by_id = defaultdict(list)
    for record in out:
        by_id[record["record_id"]].append(stream_values(record))
    for record_id, copies in by_id.items():
        for copy in copies[1:]:
            bad = mismatches(copies[0], copy)
            assert bad == [], f"duplicates of {record_id} differ: {bad}"
    print(f"{len(out)} feature records, {len(out) - len(by_id)} duplicates; restart: {stats}")


def test_sigterm_commits_and_a_restart_resumes_where_it_stopped(kafka_settings, tmp_path):
    settings = kafka_settings
    recording = write_recording(
        tmp_path / "sim.ndjson.gz", ticks=20000, seconds=7200, seed=5, gap_at=None
    )
    records = tick_records(raw_ticks([recording]))
    batch = batch_rows([recording])
    log_path = tmp_path / "featurize.log"
    half = len(records) // 2
    produce(settings, records[:half])
    proc = start_featurize(settings, log_path=log_path)
    try:
        read_topic(settings, settings.features_topic, done=lambda m: len(m) >= half, quiet_s=30)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        stats = finish(proc, timeout_s=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stats["ticks_in"] == half

    produce(settings, records[half:])
    options = ("--max-idle-seconds", "3", "--warmup-records", "300")
    stats = finish(start_featurize(settings, *options, log_path=log_path))
    assert stats["ticks_in"] == len(records) - half  # nothing before the commit came again
    assert stats["rewinds"] > 0
    assert 0 < max(warm_spans(log_path)) < half  # it re-read from the middle of the partitions
    out = feature_records(
        read_topic(settings, settings.features_topic, done=lambda m: len(m) >= len(batch))
    )
    assert len(out) == len(batch)  # a graceful stop leaves no duplicates
    assert compare_with_batch(batch, out) == []  # bit-identical after the warm-up
