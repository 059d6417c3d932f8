"""``cryptovol broker`` as a user runs it: topics ready, Ctrl-C stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.io.broker import free_port, port_open
from tasks.io.kafka import require_broker
from tasks.settings import Settings

pytestmark = pytest.mark.integration

CRYPTOVOL = Path(sys.executable).with_name("cryptovol")  # the console script of this environment


def test_broker_command_creates_topics_and_stops_on_sigint():
    port = free_port()
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [str(CRYPTOVOL), "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        topics: dict = {}
        deadline = time.monotonic() + 60
        wanted = {
            settings.raw_topic,
            settings.features_topic,
            settings.predictions_topic,
            settings.dlq_topic,
        }
        while not wanted <= set(topics):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "topics were not created"
            time.sleep(0.2)
            if port_open("127.0.0.1", port):
                topics = require_broker(settings, timeout=5).list_topics(timeout=5).topics
        assert len(topics[settings.raw_topic].partitions) == 3

        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert not port_open("127.0.0.1", port)  # the broker process went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
