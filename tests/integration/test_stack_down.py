"""``cryptovol down`` stops what a part left behind (issue 15, case 13).

``mlflow server`` serves from a uvicorn child. Before, when the parent had been killed, ``down``
found its recorded pid dead, skipped it, and the child kept serving on the port. Now ``down``
signals each part's process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tasks.cli import main
from tasks.io.broker import free_port
from tasks.settings import Settings, get_settings
from tasks.stack.supervisor import Stack, group_alive, port_in_use
from tasks.stack.up import Endpoints, server_parts, state_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # MLflow starts in 20-60 s here


def test_down_stops_the_mlflow_child_whose_parent_was_killed(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", mlflow_port=free_port())
    (part,) = [p for p in server_parts(settings, Endpoints.of(settings, {})) if p.name == "mlflow"]
    stack = Stack(state_path(settings), tmp_path / "logs", Path.cwd())
    running = stack.start(part, lambda line: None)  # as `up` starts it: its own session
    group = running.pid
    try:
        os.kill(running.pid, signal.SIGKILL)
        os.waitpid(running.pid, 0)
        assert group_alive(group)  # its uvicorn child is still there
        assert port_in_use(settings.mlflow_port)  # ...and still serving

        monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("CRYPTOVOL_MLFLOW_PORT", str(settings.mlflow_port))
        get_settings.cache_clear()
        assert main(["down"]) == 0

        assert not group_alive(group)
        assert not port_in_use(settings.mlflow_port)
        assert not state_path(settings).exists()
    finally:
        get_settings.cache_clear()
        with contextlib.suppress(ProcessLookupError):  # only if the test failed: what it started
            os.killpg(group, signal.SIGKILL)
