"""Capture stops when its archive cannot be written (issue 15, case 3).

Before, a full disk or a data dir that is a file raised an ``OSError`` in the message handler,
which the exchange client took for a connection failure: capture logged "cannot connect",
reconnected forever, and exited 0 when its minutes were up, with ``archive_lines`` counting lines
that never reached the disk. The archive is the durable copy: now capture stops with exit 1 and
a message naming the path, and counts only the lines that reached the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tasks.io.recordings import BadLine, expand_inputs, read_envelopes
from tasks.sim.exchange import ExchangeServer, ExchangeThread, simulator_ticks

pytestmark = pytest.mark.integration

PRODUCTS = ("BTC-USD", "ETH-USD")


def _capture(kafka_settings, data_dir, url: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": kafka_settings.raw_topic,
    }
    args = ["--url", url, "--products", ",".join(PRODUCTS), "--minutes", "3"]
    args += ["--metrics-port", "0", "--data-dir", str(data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", "capture", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,  # a guard only: capture must stop on its own long before its 3 minutes
    )


def test_a_full_disk_stops_capture_with_exit_1_and_counts_only_lines_on_disk(
    kafka_settings, small_disk
):
    small_disk.fill(leave_bytes=256 * 1024)
    server = ExchangeServer(simulator_ticks(PRODUCTS, seed=3, start=1.767e9), speed=None)
    with ExchangeThread(server) as exchange:
        proc = _capture(kafka_settings, small_disk.path, exchange.url)

    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "cannot connect" not in proc.stderr
    summary = json.loads(proc.stdout)
    archive = small_disk.path / "archive"
    assert summary["error"].startswith(f"cannot write the raw archive at {archive}/")
    assert "No space left on device" in summary["error"]
    assert summary["error"] in proc.stderr
    assert summary["connections"] == 1 and summary["reconnects"] == 0

    readable = [
        item for item in read_envelopes(expand_inputs([archive])) if not isinstance(item, BadLine)
    ]
    assert summary["archive_lines"] > 100
    assert summary["archive_lines"] <= len(readable)  # never a line that is not on disk
    assert summary["archive_lines"] < summary["messages"]


def test_a_data_dir_that_is_a_file_stops_capture_before_it_connects(kafka_settings, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.write_text("not a folder")
    server = ExchangeServer(
        simulator_ticks(PRODUCTS, seed=4, start=1.767e9), speed=10.0, record=True
    )
    with ExchangeThread(server) as exchange:
        proc = _capture(kafka_settings, data_dir, exchange.url)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"cannot write the raw archive at {data_dir / 'archive'}: Not a directory" in (
        proc.stderr
    )
    assert not server.sent  # refused before connecting
    assert data_dir.read_text() == "not a folder"
