"""The raw archive: routing, rotation, exact lines, readable back (also mid-write)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from tasks.core.messages import parse_envelope
from tasks.io.archive import (
    CONTROL_KEY,
    MULTI_KEY,
    ArchiveWriteError,
    ArchiveWriter,
    archive_key,
)
from tasks.io.recordings import BadLine, expand_inputs, read_envelopes, source_name

HOUR = 1767225600.0  # 2026-01-01T00:00:00Z


def _ticker(seq: int, *products: str) -> str:
    tickers = [{"type": "ticker", "product_id": p, "price": "1"} for p in products]
    return json.dumps(
        {
            "channel": "ticker",
            "client_id": "",
            "timestamp": "2026-01-01T00:00:00.000001Z",
            "sequence_num": seq,
            "events": [{"type": "update", "tickers": tickers}],
        }
    )


def _heartbeat(seq: int) -> str:
    return json.dumps(
        {"channel": "heartbeats", "timestamp": "2026-01-01T00:00:00Z", "sequence_num": seq}
    )


def test_messages_are_routed_to_exactly_one_folder():
    assert archive_key(parse_envelope(_ticker(0, "BTC-USD"))) == "BTC-USD"
    assert archive_key(parse_envelope(_ticker(0, "BTC-USD", "BTC-USD"))) == "BTC-USD"
    assert archive_key(parse_envelope(_ticker(0, "BTC-USD", "ETH-USD"))) == MULTI_KEY
    assert archive_key(parse_envelope(_ticker(0))) == CONTROL_KEY
    assert archive_key(parse_envelope(_heartbeat(1))) == CONTROL_KEY
    assert archive_key(None) == CONTROL_KEY
    for not_a_product in ("..", "../../etc", "", "btc/usd", "X" * 10_000):
        assert archive_key(parse_envelope(_ticker(0, not_a_product))) == CONTROL_KEY


def test_a_product_id_of_dot_dot_stays_inside_the_archive(tmp_path):
    """Issue 15, item 6: ``..`` was a folder name, so its file landed beside ``archive/``."""
    root = tmp_path / "archive"
    archive = _write_all(
        root, [(_ticker(0, ".."), "run-1", HOUR), (_ticker(1, "."), "run-1", HOUR)]
    )
    (path,) = archive.stats.files  # both in the control folder's one file of this connection
    assert path.parent == root / CONTROL_KEY
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.gz")) == [
        path.relative_to(tmp_path)
    ]


def _write_all(root: Path, messages: list[tuple[str, str, float]]) -> ArchiveWriter:
    with ArchiveWriter(root) as archive:
        for text, source, received_at in messages:
            envelope = parse_envelope(text) if text.startswith("{") else None
            archive.write(text, archive_key(envelope), source, received_at)
    return archive


def test_lines_are_kept_unchanged_and_rotated_per_hour_and_connection(tmp_path):
    odd_spacing = '{"channel": "ticker", "timestamp": "2026-01-01T00:00:00Z", "events": []}'
    messages = [
        (_ticker(0, "BTC-USD"), "run-1", HOUR + 10),
        (_heartbeat(1), "run-1", HOUR + 11),
        (_ticker(2, "ETH-USD"), "run-1", HOUR + 12),
        (_ticker(3, "BTC-USD"), "run-1", HOUR + 3599.5),
        (_ticker(4, "BTC-USD"), "run-1", HOUR + 3600.2),  # next hour: new file
        (_ticker(0, "BTC-USD"), "run-2", HOUR + 3601),  # new connection: new file
        (odd_spacing, "run-2", HOUR + 3602),
        ("not json at all", "run-2", HOUR + 3603),
    ]
    archive = _write_all(tmp_path, messages)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in archive.stats.files)
    assert names == [
        "BTC-USD/BTC-USD_20260101_000010_run-1.ndjson.gz",
        "BTC-USD/BTC-USD_20260101_010000_run-1.ndjson.gz",
        "BTC-USD/BTC-USD_20260101_010001_run-2.ndjson.gz",
        "ETH-USD/ETH-USD_20260101_000012_run-1.ndjson.gz",
        "_control/_control_20260101_000011_run-1.ndjson.gz",
        "_control/_control_20260101_010002_run-2.ndjson.gz",
    ]
    assert archive.stats.lines == len(messages)
    lines = []
    for path in expand_inputs([tmp_path]):
        lines += gzip.decompress(path.read_bytes()).decode().splitlines()
    assert sorted(lines) == sorted(text for text, _, _ in messages)
    # Read back as recordings: one sequence space per file, the bad line reported.
    items = list(read_envelopes(expand_inputs([tmp_path])))
    assert sum(isinstance(i, BadLine) for i in items) == 1
    per_file = {}
    for item in items:
        if not isinstance(item, BadLine):
            per_file.setdefault(source_name(item.path), []).append(item.envelope.sequence_num)
    assert all(len(set(seqs)) == len(seqs) for seqs in per_file.values())


def test_flushed_lines_are_readable_while_the_file_is_still_open(tmp_path):
    archive = ArchiveWriter(tmp_path, flush_every_s=0.0)
    for seq in range(50):
        archive.write(_ticker(seq, "BTC-USD"), "BTC-USD", "run-1", HOUR)
    # As if the process were killed now: no gzip trailer yet.
    (path,) = archive.stats.files
    items = list(read_envelopes([path]))
    good = [i for i in items if not isinstance(i, BadLine)]
    assert [i.envelope.sequence_num for i in good] == list(range(50))
    assert len(items) - len(good) == 1  # the unfinished stream: one bad line
    archive.close()
    assert all(not isinstance(i, BadLine) for i in read_envelopes([path]))


def test_close_source_finishes_only_that_connection(tmp_path):
    archive = ArchiveWriter(tmp_path)
    archive.write(_ticker(0, "BTC-USD"), "BTC-USD", "run-1", HOUR)
    archive.write(_ticker(0, "BTC-USD"), "BTC-USD", "run-2", HOUR)
    archive.close_source("run-1")
    first, second = archive.stats.files
    assert gzip.decompress(first.read_bytes())  # complete gzip
    archive.write(_ticker(1, "BTC-USD"), "BTC-USD", "run-2", HOUR + 1)
    archive.close()
    assert len(gzip.decompress(second.read_bytes()).splitlines()) == 2
    assert len(archive.stats.files) == 2


def test_a_full_disk_raises_naming_the_file_and_counts_only_lines_that_reached_it(small_disk):
    """Before, the OSError escaped as a network-looking error and every line written to the
    compressor counted, on disk or not."""
    archive = ArchiveWriter(small_disk.path / "archive", flush_every_s=3600)
    for seq in range(10):
        archive.write(_ticker(seq, "BTC-USD"), "BTC-USD", "run-1", HOUR)
    archive.flush()
    small_disk.fill()
    flushed = 10
    with pytest.raises(ArchiveWriteError, match="No space left on device") as failure:
        while flushed < 100_000:
            archive.write(os.urandom(2000).hex(), "BTC-USD", "run-1", HOUR)  # incompressible
            archive.flush()
            flushed += 1
    assert not isinstance(failure.value, OSError)  # not to be retried as a connection error
    (path,) = archive.stats.files
    assert str(failure.value).startswith(f"cannot write the raw archive at {path}: ")
    with pytest.raises(ArchiveWriteError):
        archive.close()  # the gzip trailer does not fit either
    assert archive.stats.lines == flushed  # not the line whose flush failed
    items = list(read_envelopes([path]))
    assert [i.envelope.sequence_num for i in items[:10]] == list(range(10))
    assert len(items) >= flushed  # each counted line is in the file (the rest: bad lines)


def test_an_archive_under_a_file_is_refused_by_name(tmp_path):
    (tmp_path / "data").write_text("a file")
    with pytest.raises(ArchiveWriteError, match="Not a directory"):
        ArchiveWriter(tmp_path / "data" / "archive").prepare()
