"""Serving test helpers: registered versions on the session's MLflow server, real ``bentoml
serve`` processes on free loopback ports, and a small concurrent load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tasks.core.training import TrainConfig
from tasks.io.broker import free_port
from tasks.settings import Settings
from tasks.stack.servers import PROJECT_DIR, Service, wait_http
from tasks.stages.train import train_and_register

POLL_S = 1.0  # the services' registry poll interval in these tests
# One quick candidate on 2 folds: these tests are about serving, not model quality.
QUICK = TrainConfig(candidates=("har_logistic",), n_folds=2)
EXAMPLE_ROW = {"ret_mean": 0.05, "ret_std": 0.01, "n": 50}  # the design notes' request


def train_version(settings: Settings, recordings: Path, *, shuffle_labels: bool = False) -> str:
    config = TrainConfig(
        candidates=QUICK.candidates, n_folds=QUICK.n_folds, shuffle_labels=shuffle_labels
    )
    record = train_and_register(settings, [str(recordings)], config, check_contracts=False)
    return record["version"]


def serving_env(tracking_uri: str, home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BENTOML_HOME": str(home),  # one per server: BentoML wipes its metrics dir at start
        "BENTOML_DO_NOT_TRACK": "true",
        "CRYPTOVOL_MODEL_POLL_S": str(POLL_S),
        "CRYPTOVOL_DATA_DIR": str(home / "data"),
        **extra,
    }


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class BentoServer:
    """A ``bentoml serve`` process from the repository root."""

    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        service = Service("bentoml", self.proc, self.url, self.log_path)
        service.stop(timeout=20)


def start_bento(target: str, env: dict[str, str], log_path: Path) -> BentoServer:
    """Spawn ``bentoml serve TARGET`` on a free port (not waiting for it)."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [tool("bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_DIR,
            start_new_session=True,
        )
    return BentoServer(proc, port, log_path)


def wait_ready(server: BentoServer, timeout: float = 180.0) -> BentoServer:
    try:
        wait_http(f"{server.url}/health", timeout, server.proc)
    except Exception as exc:
        server.stop()
        raise RuntimeError(f"bentoml serve did not come up: {exc}\n{server.log()[-3000:]}") from exc
    return server


def get(server, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30)


def predict(server, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}/predict",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )


def metrics(server) -> dict[str, list]:
    """Samples by metric family name."""
    text = get(server, "/metrics").text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def sample(families: dict, name: str, **labels) -> float | None:
    for family in families.values():
        for s in family:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@dataclass
class Load:
    """Clients sending one-row ``/predict`` requests back to back until stopped; every status
    and every version served is counted."""

    url: str
    clients: int = 4
    statuses: Counter = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json={"rows": [EXAMPLE_ROW]})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.versions.append(response.json()["version"])

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def served(self) -> int:
        with self._lock:
            return sum(self.statuses.values())


def fitted_har_rv(seed: int = 0):
    """A HAR-RV predictor fitted on synthetic rows (a linear model: extreme inputs overflow it)
    and a frame of such rows."""
    import numpy as np
    import pandas as pd

    from tasks.core.features import FEATURE_NAMES
    from tasks.core.models import SpikePredictor, make_estimator
    from tasks.core.scorer import FitTarget

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        np.abs(rng.normal(1.0, 0.3, (500, len(FEATURE_NAMES)))), columns=FEATURE_NAMES
    )
    forward = np.abs(rng.normal(1.0, 0.3, len(frame)))
    tau = 1.3
    estimator = make_estimator("har_rv").fit(
        frame, (forward >= tau).astype(int), target=FitTarget(forward, tau)
    )
    label = {"mode": "absolute", "tau": tau, "horizon_s": 60}
    return SpikePredictor("har_rv", estimator, label, 0.5, feature_names=FEATURE_NAMES), frame


def register_predictor(settings: Settings, predictor, frame, variant: str = "ml") -> str:
    """Log ``predictor`` in a run of the project's experiment and register it as a new version."""
    import mlflow

    from tasks.io import registry
    from tasks.io.model_store import log_model

    client = registry.connect(settings)
    experiment = registry.experiment_id(settings, client)
    with mlflow.start_run(experiment_id=experiment, run_name="tests-crafted") as run:
        info = log_model("model", predictor, frame)
    return registry.register_version(
        client, info, registry.model_name(settings, variant), run.info.run_id
    )


EXTREME_VALUES = (1e308, -1e308, 1e-320, -1e-320, 1e200, -5.0, 1e15, 0.0, 1.0, 5e-324)


def overflowing_row(predictor):
    """The first row of extreme values (a fixed pseudo-random search) that ``predictor``
    scores as non-finite."""
    import numpy as np

    rng = np.random.default_rng(1)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(20_000):
            row = rng.choice(EXTREME_VALUES, len(predictor.feature_names))
            if not np.isfinite(predictor.predict_array(row[None, :])[0]):
                return row
    raise AssertionError("no overflowing row found")
