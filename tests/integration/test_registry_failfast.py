"""A registry that cannot be reached is not a missing alias (issue 9, case 6 and the SQLite race).

Before, with ``MLFLOW_TRACKING_URI`` pointing at nothing, ``promote``, ``rollback`` and
``evaluate`` retried for about four minutes and then said "no champion alias" or "no version 1",
because every registry exception was read as "missing"; and two first runs on a fresh SQLite
store crashed in MLflow's schema migration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.io.broker import free_port
from tasks.io.registry import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    RegistryUnavailable,
    alias_version,
    champion_history,
    connect,
    version_tags,
)
from tasks.settings import Settings
from tasks.stack.servers import start_mlflow_server
from tasks.stages.promote import promote, rollback

pytestmark = pytest.mark.integration

CRYPTOVOL = Path(sys.executable).with_name("cryptovol")


@pytest.fixture(autouse=True)
def _tracking_uri_restored(monkeypatch):
    """``connect`` points MLflow (and its environment variable) at a store: undo it after."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


def _nobody() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_connect_fails_within_seconds_naming_the_server():
    uri = _nobody()
    started = time.monotonic()
    with pytest.raises(
        RegistryUnavailable, match=f"cannot reach the MLflow tracking server at {uri}"
    ):
        connect(Settings(mlflow_tracking_uri=uri))
    assert time.monotonic() - started < 10


def test_a_server_gone_midway_is_not_a_missing_alias(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = _nobody()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with pytest.raises(RegistryUnavailable, match=uri):
        alias_version(client, "volatility-spike", CHAMPION)  # before: None, "no champion"
    with pytest.raises(RegistryUnavailable):
        version_tags(client, "volatility-spike", "1")
    with pytest.raises(RegistryUnavailable):
        champion_history(client, "volatility-spike")


@pytest.mark.parametrize(
    "argv",
    [["promote"], ["rollback"], ["evaluate", "--data", "."]],
    ids=["promote", "rollback", "evaluate"],
)
def test_commands_fail_fast_when_the_tracking_server_is_away(argv, tmp_path):
    uri = _nobody()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CRYPTOVOL_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    proc = subprocess.run(
        [str(CRYPTOVOL), *argv], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert time.monotonic() - started < 30
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said
    assert f"cannot reach the MLflow tracking server at {uri}" in said
    assert "Traceback" not in said and "alias" not in said and "no version" not in said


def test_a_missing_alias_or_version_on_a_live_store_is_still_missing(tmp_path):
    settings = Settings(data_dir=tmp_path)
    client = connect(settings)
    assert alias_version(client, "volatility-spike", CHAMPION) is None
    assert champion_history(client, "volatility-spike") == []
    with pytest.raises(RegistryError, match="has no version 7") as caught:
        version_tags(client, "volatility-spike", "7")
    assert not isinstance(caught.value, RegistryUnavailable)
    with pytest.raises(RegistryError, match=f"no {CHALLENGER!r} alias"):
        promote(settings)
    with pytest.raises(RegistryError, match=f"no {CHAMPION!r} alias"):
        rollback(settings)


@pytest.mark.slow
def test_a_missing_alias_over_rest_is_missing_and_a_stopped_server_is_unreachable(tmp_path):
    server = start_mlflow_server(tmp_path / "mlflow", free_port())
    try:
        settings = Settings(mlflow_tracking_uri=server.url, data_dir=tmp_path)
        client = connect(settings)
        assert alias_version(client, "volatility-spike", CHAMPION) is None
        with pytest.raises(RegistryError, match="has no version 3"):
            version_tags(client, "volatility-spike", "3")
    finally:
        server.stop()
    with pytest.raises(RegistryUnavailable):
        connect(settings)


@pytest.mark.slow  # four processes each migrating a fresh store: about 25 s on 2 cores
def test_first_runs_on_a_fresh_sqlite_store_take_turns(tmp_path):
    """Four processes open a store that does not exist yet, at once: none crashes."""
    script = (
        "from tasks.io.registry import connect, experiment_id\n"
        "from tasks.settings import Settings\n"
        f"settings = Settings(data_dir={str(tmp_path)!r})\n"
        "experiment_id(settings, connect(settings))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(4)
    ]
    results = [proc.communicate(timeout=180) for proc in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    assert (tmp_path / "mlflow.db").exists()
