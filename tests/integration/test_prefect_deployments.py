"""The user's daily loop, exactly as the README gives it, on real servers over loopback.

The session's Prefect server (with the ``cryptovol`` work pool) and a process worker of this
module run the deployments of ``prefect.yaml``; the session's ``mlflow server`` (SQLite + proxied
artifacts) holds the registry, reached over REST, under a model name of this module's own.
train -> challenger; validate + promote -> champion; a shuffled-labels challenger is refused;
a forced promotion of it is rolled back by ``cryptovol rollback``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient
from session_services import PREFECT_POOL

from tasks.sim.writer import write_recordings
from tasks.stack.servers import PROJECT_DIR, start_prefect_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "volatility-spike-deployments"  # this module's name on the session's MLflow server
# Whether a model beats persistence on 80 simulated minutes depends on the seed; the gates'
# thresholds are tested elsewhere, so the first promotion needs only a scored, passing decision.
LENIENT_GATES = {"baseline_gain": -1.0, "max_ece": 1.0, "max_rate_ratio": 1e9, "min_positives": 1}


@pytest.fixture(scope="module")
def stack(mlflow_server, prefect_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    recordings = root / "recordings"
    write_recordings(recordings, products=("BTC-USD", "ETH-USD"), seed=3, minutes=80)
    env = {
        **os.environ,
        **prefect_server.env,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "CRYPTOVOL_REGISTERED_MODEL": MODEL,
        "CRYPTOVOL_DATA_DIR": str(root / "data"),
        "PWD": str(PROJECT_DIR),
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick up a new run at once, not within 10 s
    }
    _prefect(
        env, "--no-prompt", "deploy", "--name", "train", "--name", "validate", "--name", "promote"
    )
    worker = start_prefect_worker(PREFECT_POOL, env, root / "worker.log")
    try:
        yield {"env": env, "recordings": str(recordings), "mlflow": mlflow_server.url}
    finally:
        worker.stop()


def _prefect(env: dict, *args: str) -> str:
    proc = subprocess.run(
        [str(Path(os.sys.executable).with_name("prefect")), *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _run(stack: dict, deployment: str, **params) -> None:
    """``prefect deployment run NAME --watch``; the run must complete."""
    args = ["deployment", "run", deployment, "--watch", "--watch-interval", "1"]
    args += ["--watch-timeout", "420"]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    out = _prefect(stack["env"], *args)
    assert "Completed" in out, out


def _champion(client: MlflowClient) -> str:
    return client.get_registered_model(MODEL).aliases["champion"]


def test_train_validate_promote_rollback_through_deployments(stack):
    # the registry too: an earlier test in this process may have set a global registry URI
    client = MlflowClient(tracking_uri=stack["mlflow"], registry_uri=stack["mlflow"])
    data = [stack["recordings"]]

    _run(stack, "train/train", data=data)
    assert client.get_registered_model(MODEL).aliases == {"challenger": "1"}

    _run(stack, "validate/validate", data=data, gates=LENIENT_GATES)
    assert client.get_model_version(MODEL, "1").tags["validation.decision"] == "pass"
    _run(stack, "promote/promote")
    assert _champion(client) == "1"

    # A degraded challenger: the default gates refuse it and the champion stays.
    _run(stack, "train/train", data=data, shuffle_labels=True)
    assert client.get_registered_model(MODEL).aliases["challenger"] == "2"
    _run(stack, "validate/validate", data=data)
    assert client.get_model_version(MODEL, "2").tags["validation.decision"] == "fail"
    _run(stack, "promote/promote")
    assert _champion(client) == "1"

    # Forced through anyway, then rolled back by the operator's command.
    _run(stack, "promote/promote", force=True, why="drill: force a refused model")
    assert _champion(client) == "2"
    cryptovol = str(Path(os.sys.executable).with_name("cryptovol"))
    proc = subprocess.run(
        [cryptovol, "rollback", "--why", "drill"],
        env=stack["env"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _champion(client) == "1"
