"""Misstamped ticks through the real broker: dead-lettered with the reason, the stream goes on,
and after a restart too; the stream's features equal the batch path's (issue 9, cases 1 and 2).

Before, one ticker a year (or an hour) ahead moved its product's event time forward: every later
tick of that product was dropped as late, and a restarted featurizer re-read it in its warm-up
and did the same.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest
from featurize_support import (
    batch_rows,
    compare_with_batch,
    feature_records,
    read_topic,
    write_recording,
)

from tasks.core.timeutil import format_ts, parse_ts
from tasks.services.featurizer import run_featurizer
from tasks.services.replay import run_replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1767225600.0
YEAR = 365 * 86400.0


def _restamp(path: Path, shifts: dict[int, float]) -> list[str]:
    """Move the envelope timestamps of some ticker lines (by position among them); their ids."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    tickers = [i for i, line in enumerate(lines) if '"channel": "ticker"' in line]
    ids = []
    for position, shift in shifts.items():
        envelope = json.loads(lines[tickers[position]])
        envelope["timestamp"] = format_ts(parse_ts(envelope["timestamp"]) + shift)
        lines[tickers[position]] = json.dumps(envelope)
        for index, ticker in enumerate(envelope["events"][0]["tickers"]):
            ids.append(f"{ticker['product_id']}|{path.name}|{envelope['sequence_num']}|{index}")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return ids


def test_misstamped_ticks_are_dead_lettered_and_stream_equals_batch_across_a_restart(
    kafka_settings, tmp_path
):
    settings = kafka_settings
    first = write_recording(
        tmp_path / "a.ndjson.gz", ticks=1500, seconds=450, seed=21, start=T0, gap_at=None
    )
    second = write_recording(
        tmp_path / "b.ndjson.gz", ticks=1500, seconds=450, seed=22, start=T0 + 460, gap_at=None
    )
    poisoned = _restamp(first, {200: YEAR, 600: 3600.0, 1000: -5 * YEAR})
    group = f"g-{uuid.uuid4().hex[:8]}"

    stats = run_replay(settings, [first], speed=None)
    assert stats.undelivered == 0 and stats.malformed == 0
    before = run_featurizer(settings, group, max_idle_s=3, metrics_port=0)
    assert before.dlq == len(poisoned)
    # a restart: the warm-up re-reads the misstamped ticks and refuses them again
    run_replay(settings, [second], speed=None)
    after = run_featurizer(settings, group, max_idle_s=3, metrics_port=0)
    assert after.warmup_ticks > 0 and after.dlq == 0 and after.late_dropped == 0

    records = feature_records(read_topic(settings, settings.features_topic))
    batch = batch_rows([first, second])
    assert not set(poisoned) & set(batch)  # refused by the batch path too
    assert compare_with_batch(batch, records) == []
    assert len(records) == len(batch)

    dead = read_topic(settings, settings.dlq_topic, done=lambda m: len(m) >= len(poisoned))
    reasons = {
        json.loads(m.value())["sequence_num"]: dict(m.headers())["error"].decode() for m in dead
    }
    assert len(reasons) == len({rid.split("|")[2] for rid in poisoned})
    assert all(reason.startswith("event time:") for reason in reasons.values())
