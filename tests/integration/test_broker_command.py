"""``cryptovol broker`` as a user runs it: topics ready, Ctrl-C stops it cleanly."""

from __future__ import annotations

import signal
import socket
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


def test_broker_command_killed_outright_takes_the_broker_with_it():
    """SIGKILL leaves no handler to stop the child: before, the broker lived on, on the port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(CRYPTOVOL), "broker", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "the broker did not start"
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_open("127.0.0.1", port), "the broker outlived `cryptovol broker`"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_broker_command_refuses_a_port_out_of_range_in_one_line(port):
    proc = subprocess.run(
        [str(CRYPTOVOL), "broker", "--port", port], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "port" in proc.stderr


def test_broker_command_on_a_port_in_use_says_so_in_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [str(CRYPTOVOL), "broker", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port} is already in use" in proc.stderr
