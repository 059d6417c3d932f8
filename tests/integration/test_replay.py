"""Replay into a real broker: every ticker once, bad lines reported, nothing else lost."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from topic_reader import read_raw_ticks

from tasks.io.recordings import BadLine, read_ticks
from tasks.services.replay import run_replay
from tasks.sim.simulator import simulate_envelopes

pytestmark = pytest.mark.integration


def _generated_lines(minutes: float, seed: int = 3) -> list[str]:
    return [
        json.dumps(e, separators=(",", ":"))
        for e in simulate_envelopes(("BTC-USD", "ETH-USD"), seed=seed, minutes=minutes)
    ]


def _ticks(path: Path) -> list:
    return [t for t in read_ticks([path]) if not isinstance(t, BadLine)]


def _content(tick) -> tuple:
    """A tick without its source (the file name), which differs between copies of a file."""
    record = tick.to_record()
    record.pop("source")
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in record.items()))


def test_replay_of_a_real_recording_puts_exactly_its_tickers_on_the_topic(
    kafka_settings, shared_recordings
):
    path = next(p for p in shared_recordings if p.name == "BTC-USD_20251206_013105.ndjson.gz")
    expected = _ticks(path)
    stats = run_replay(kafka_settings, [path], speed=None)
    assert stats.malformed == 0 and stats.undelivered == 0
    assert stats.tickers == len(expected) == 1034
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=len(expected))
    # One product, one partition: the order is kept, and every record is the recorded ticker.
    assert [r.to_record() for _, r in records] == [t.to_record() for t in expected]
    assert {key for key, _ in records} == {b"BTC-USD"}


def test_replay_of_generated_recordings_merges_files_by_time(kafka_settings, tmp_path):
    lines = _generated_lines(minutes=2)
    # Split one recording into two files whose times interleave; the merge restores the order.
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson.gz"
    first.write_text("\n".join(lines[0::2]) + "\n")
    second.write_bytes(gzip.compress(("\n".join(lines[1::2]) + "\n").encode()))
    whole = tmp_path / "whole.ndjson"
    whole.write_text("\n".join(lines) + "\n")
    expected = _ticks(whole)

    stats = run_replay(kafka_settings, [tmp_path / "a.ndjson", second], speed=None)
    heartbeats = sum('"channel":"heartbeats"' in line for line in lines)
    assert stats.messages == len(lines)
    assert stats.skipped == heartbeats > 100
    assert stats.tickers == len(expected)
    assert set(stats.products) == {"BTC-USD", "ETH-USD"}
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=len(expected))
    for product in ("BTC-USD", "ETH-USD"):
        got = [r.timestamp for _, r in records if r.product_id == product]
        assert got == [t.timestamp for t in expected if t.product_id == product]
        assert got == sorted(got)


def test_corrupt_lines_are_reported_and_nothing_else_is_lost(kafka_settings, tmp_path):
    lines = _generated_lines(minutes=1)
    bad_lines = {
        5: '{"channel":"ticker","timestamp":"2026-01-01T00:00:01Z","sequence_num":4,"ev',
        9: "\x00\x01\x02 binary garbage \xff",
        14: '{"timestamp":"2026-01-01T00:00:02Z","events":[]}',
        20: '{"channel":"ticker","timestamp":"2026-01-01T00:00:03Z","events":[{"tickers":[{}]}]}',
        30: '{"channel":"ticker","timestamp":"yesterday","events":[]}',
        41: "[1, 2, 3]",
        50: '{"type":"error","message":"rate limited"}',
        60: "[" * 100_000 + "]" * 100_000,  # poison: before, a RecursionError ended the replay
    }
    corrupt = list(lines)
    for lineno in sorted(bad_lines):  # 1-based line numbers in the final file
        corrupt.insert(lineno - 1, bad_lines[lineno])
    path = tmp_path / "corrupt.ndjson"
    path.write_bytes(("\n".join(corrupt) + "\n").encode("utf-8", "surrogateescape"))
    clean = tmp_path / "clean.ndjson"
    clean.write_text("\n".join(lines) + "\n")

    # A second file cut short, as a recorder killed mid-write leaves it.
    tail_lines = _generated_lines(minutes=2, seed=4)
    data = gzip.compress(("\n".join(tail_lines) + "\n").encode())
    cut = data[: len(data) * 2 // 3]
    truncated = tmp_path / "truncated.ndjson.gz"
    truncated.write_bytes(cut)
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut).split(b"\n")[:-1]
    complete = tmp_path / "complete.ndjson"
    complete.write_bytes(b"\n".join(readable) + b"\n")

    stats = run_replay(kafka_settings, [path, truncated], speed=None, max_reported=20)
    reported = {line.split(": ", 1)[0] for line in stats.bad_lines}
    assert reported == {f"{path}:{n}" for n in bad_lines} | {f"{truncated}:{len(readable) + 1}"}
    assert stats.malformed == len(bad_lines) + 1
    assert stats.undelivered == 0

    expected = _ticks(clean) + _ticks(complete)
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=len(expected))
    assert sorted(_content(r) for _, r in records) == sorted(_content(t) for t in expected)


def test_replay_is_paced_by_recorded_time(kafka_settings, tmp_path):
    lines = _generated_lines(minutes=0.5)
    path = tmp_path / "paced.ndjson"
    path.write_text("\n".join(lines) + "\n")
    stats = run_replay(kafka_settings, [path], speed=15.0)
    span = stats.summary()["span_s"]
    assert span > 25
    assert stats.seconds >= span / 15.0 * 0.9


def test_replay_command_prints_a_summary(kafka_settings, tmp_path):
    path = tmp_path / "cli.ndjson"
    lines = _generated_lines(minutes=0.5)
    path.write_text("\n".join(lines) + "\nnot json\n")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": kafka_settings.raw_topic,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "replay", str(path), "--speed", "max"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["malformed"] == 1
    assert len(summary["bad_lines"]) == 1
    assert summary["bad_lines"][0].startswith(f"{path}:{len(lines) + 1}: not JSON")
    assert summary["tickers"] == len(_ticks(path)) > 0
    assert summary["undelivered"] == 0
    assert set(summary) >= {"messages", "skipped", "products", "first", "last", "messages_per_s"}


def test_a_record_over_the_message_size_is_counted_and_the_rest_is_sent(
    kafka_settings, tmp_path, caplog
):
    lines = _generated_lines(minutes=1)
    at = next(i for i, line in enumerate(lines) if '"channel":"ticker"' in line) + 5
    while '"channel":"ticker"' not in lines[at]:
        at += 1
    huge = json.loads(lines[at])
    huge["events"][0]["tickers"][0]["note"] = "x" * 1_200_000  # over librdkafka's 1 MB limit
    big = [*lines[:at], json.dumps(huge, separators=(",", ":")), *lines[at + 1 :]]
    path = tmp_path / "big.ndjson"
    path.write_text("\n".join(big) + "\n")
    clean = tmp_path / "clean.ndjson"
    clean.write_text("\n".join(lines[:at] + lines[at + 1 :]) + "\n")

    with caplog.at_level(logging.ERROR):
        stats = run_replay(kafka_settings, [path], speed=None)  # before: MSG_SIZE_TOO_LARGE
    assert stats.too_large == 1 and stats.undelivered == 1
    assert any(f"{path}:{at + 1}" in r.getMessage() for r in caplog.records)
    expected = _ticks(clean)
    assert stats.delivered == len(expected)
    records = read_raw_ticks(kafka_settings, kafka_settings.raw_topic, expected=len(expected))
    assert sorted(_content(r) for _, r in records) == sorted(_content(t) for t in expected)
