"""The suite cleans up after itself: a pytest run stopped with SIGTERM (a CI timeout, a user's
``kill``) leaves no server it started, even one in a session of its own on an xdist worker that
never got to its teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a pytest run inside: 10-30 s
TESTS_DIR = Path(__file__).resolve().parents[1]
HANGING_TEST = """
import os, subprocess, sys, time

def test_starts_a_server_then_hangs():
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    with open(os.environ["SERVER_PID_FILE"], "w") as out:
        out.write(str(server.pid))
    time.sleep(600)
"""


def running(pid: int) -> bool:
    """Alive and not a zombie (one whose parent is gone waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_to_pytest_stops_what_its_tests_started(tmp_path):
    (tmp_path / "test_hanging.py").write_text(HANGING_TEST)
    pid_file = tmp_path / "server.pid"
    inner = [sys.executable, "-m", "pytest", "-c", os.devnull, "-p", "no:cacheprovider"]
    run = subprocess.Popen(
        [*inner, "-p", "conftest", "-n", "1", str(tmp_path / "test_hanging.py")],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR), "SERVER_PID_FILE": str(pid_file)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        server = int(pid_file.read_text())
        assert running(server)
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    deadline = time.monotonic() + 10
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(server), out
    assert "left running" in out and str(server) in out
