"""``cryptovol up``, ``status`` and ``down`` as a user runs them, on free ports in a fresh folder:
every part healthy, the user's ``prefect deployment run train/train`` completes against the stack,
the service switches to the new champion after ``promote/promote``, and ``down`` leaves no process
and no port behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tasks.io.broker import free_port
from tasks.stack.supervisor import alive, port_in_use

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BIN = Path(sys.executable).parent


def _version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as response:
        return str(json.load(response)["version"])


def test_up_status_train_promote_down(tmp_path, process_mark):
    ports = {name: free_port() for name in ("broker", "mlflow", "prefect", "service")}
    ports |= {name: free_port() for name in ("featurize", "scorer", "prometheus", "pushgateway")}
    ports |= {name: free_port() for name in ("alertmanager", "inbox")}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "PREFECT_API_URL")
    }
    env |= {
        "CRYPTOVOL_DATA_DIR": str(tmp_path / ".cryptovol"),
        "CRYPTOVOL_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['broker']}",
        "CRYPTOVOL_MLFLOW_PORT": str(ports["mlflow"]),
        "CRYPTOVOL_PREFECT_PORT": str(ports["prefect"]),
        "CRYPTOVOL_SERVICE_PORT": str(ports["service"]),
        "CRYPTOVOL_FEATURIZE_METRICS_PORT": str(ports["featurize"]),
        "CRYPTOVOL_SCORER_METRICS_PORT": str(ports["scorer"]),
        "CRYPTOVOL_PROMETHEUS_PORT": str(ports["prometheus"]),
        "CRYPTOVOL_PUSHGATEWAY_URL": f"http://127.0.0.1:{ports['pushgateway']}",
        "CRYPTOVOL_ALERTMANAGER_PORT": str(ports["alertmanager"]),
        "CRYPTOVOL_ALERT_INBOX_PORT": str(ports["inbox"]),
        "CRYPTOVOL_PRODUCTS": '["BTC-USD"]',
        "CRYPTOVOL_MODEL_POLL_S": "2",
        **process_mark,  # a timeout before `down` leaves nothing running
    }
    cryptovol = str(BIN / "cryptovol")
    up = subprocess.run(
        [cryptovol, "up", "--detach", "--bootstrap-minutes", "80"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    state_file = tmp_path / ".cryptovol" / "stack" / "state.json"
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
        assert "none in the registry yet: training one" in up.stdout

        status = subprocess.run(
            [cryptovol, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        parts = {row["name"]: row for row in json.loads(status.stdout)}
        assert status.returncode == 0, status.stdout
        assert set(parts) >= {
            "broker",
            "mlflow",
            "prefect",
            "worker",
            "featurizer",
            "scorer",
            "service",
            "prometheus",
            "pushgateway",
            "alertmanager",
            "inbox",
        }
        assert all(row["healthy"] for row in parts.values()), parts
        assert _version(ports["service"]) == "1"

        prefect_env = {
            **env,
            "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
            "PREFECT_HOME": str(tmp_path / ".cryptovol" / "stack" / "prefect"),
        }
        history = tmp_path / ".cryptovol" / "simulated-bootstrap"
        for deployment, params in (
            ("train/train", ["--param", f'data=["{history}"]']),
            ("promote/promote", ["--param", "force=true", "--param", "why=e2e"]),
        ):
            run = subprocess.run(
                [str(BIN / "prefect"), "deployment", "run", deployment, *params, "--watch"],
                env=prefect_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
            assert "Completed" in run.stdout, run.stdout[-3000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _version(ports["service"]) != "2":
            time.sleep(1)
        assert _version(ports["service"]) == "2"
        pids = [row["pid"] for row in json.loads(state_file.read_text())["running"]]
    finally:
        down = subprocess.run(
            [cryptovol, "down"], env=env, capture_output=True, text=True, timeout=300
        )
    assert down.returncode == 0, down.stdout
    assert not state_file.exists()
    assert not [pid for pid in pids if alive(pid)]
    assert not [name for name, port in ports.items() if port_in_use(port)]


def test_a_taken_port_is_reported_with_what_to_do(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        env |= {
            "CRYPTOVOL_DATA_DIR": str(tmp_path / ".cryptovol"),
            "CRYPTOVOL_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        }
        up = subprocess.run(
            [str(BIN / "cryptovol"), "up", "--detach"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert up.returncode == 1
    assert f"port {port} is already in use" in up.stdout
    assert "KAFKA_BOOTSTRAP_SERVERS" in up.stdout
    assert not (tmp_path / ".cryptovol" / "stack" / "state.json").exists()
