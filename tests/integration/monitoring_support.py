"""Monitoring test helpers: a real Prometheus and Pushgateway on free ports with temporary
storage, and the project's own processes (`cryptovol exchange`, `capture`, `featurize`) for them
to scrape."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from monitoring import servers
from monitoring.grafana.dashboards import DASHBOARDS, dashboard_json, panel_queries
from tasks.io.broker import free_port
from tasks.settings import Settings
from tasks.sim.simulator import ModelParams
from tasks.stack.servers import PROJECT_DIR, Service, wait_http

# Which process exports a metric, by its name's prefix (docs/metrics.md)
SOURCES = {
    "cryptovol_capture_": "capture",
    "cryptovol_featurize_": "featurizer",
    "cryptovol_service_": "service",
    "cryptovol_scorer_": "scorer",
    "cryptovol_drift_": "monitor",
    "cryptovol_live_": "monitor",
    "cryptovol_retrain_": "monitor",
    "slo:": "slo",  # the SLO recording rules (monitoring/prometheus/slo.yml)
}
# Every target of every Grafana panel: (dashboard, panel title, refId, PromQL)
TARGETS = [
    pytest.param(key, title, ref, expr, id=f"{key}/{title}/{ref}")
    for key in DASHBOARDS
    for title, ref, expr in panel_queries(dashboard_json(key))
]


def source_of(expr: str) -> str:
    """The one process whose metrics a query reads."""
    names = re.findall(r"cryptovol_[a-z0-9_]+|slo:[a-z0-9_:]+", expr)
    assert names, f"query without a cryptovol metric: {expr}"
    sources = {s for name in names for prefix, s in SOURCES.items() if name.startswith(prefix)}
    assert len(sources) == 1, f"{expr} mixes metrics of {sources}"
    return sources.pop()


def require_monitoring_tools() -> None:
    for name in ("prometheus", "prometheus-pushgateway"):
        try:
            servers.binary(name)
        except servers.ToolMissing as exc:
            pytest.skip(str(exc))


def wait_until(condition: Callable[[], object], timeout: float, step: float = 0.25):
    """The first truthy value of ``condition()`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": settings.raw_topic,
        "CRYPTOVOL_FEATURES_TOPIC": settings.features_topic,
        "CRYPTOVOL_PREDICTIONS_TOPIC": settings.predictions_topic,
        "CRYPTOVOL_DLQ_TOPIC": settings.dlq_topic,
        "CRYPTOVOL_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CRYPTOVOL_PUSHGATEWAY_URL": settings.pushgateway_url,
    }


def start_cli(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Service:
    """``cryptovol <args>`` as a child process in its own session (stopped with SIGINT first)."""
    log_path = log_dir / f"{name}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=PROJECT_DIR,
            start_new_session=True,
        )
    return Service(name, proc, "", log_path)


@dataclass
class PrometheusStack:
    prometheus_url: str
    pushgateway_url: str
    services: list[Service] = field(default_factory=list)

    def query(self, expr: str) -> list[dict]:
        return servers.query(self.prometheus_url, expr)

    def value(self, expr: str) -> float | None:
        """The first finite value an instant query returns, or None."""
        for sample in self.query(expr):
            value = float(sample["value"][1])
            if math.isfinite(value):
                return value
        return None

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def start_prometheus_stack(
    workdir: Path, targets: dict[str, str | None], *, interval_s: float = 1.0
) -> PrometheusStack:
    """A Pushgateway and a Prometheus scraping ``targets`` (job -> host:port, None: not scraped)
    plus the Pushgateway and itself, every ``interval_s``, with the project's alert rules."""
    require_monitoring_tools()
    started: list[Service] = []
    try:
        push_port = free_port()
        started.append(servers.start_pushgateway(push_port, workdir / "pushgateway.log"))
        prom_port = free_port()
        config = servers.render_config(
            workdir / "prometheus.yml",
            {
                **targets,
                "prometheus": f"127.0.0.1:{prom_port}",
                "pushgateway": f"127.0.0.1:{push_port}",
            },
            interval_s=interval_s,
        )
        started.append(
            servers.start_prometheus(
                config, prom_port, workdir / "tsdb", workdir / "prometheus.log"
            )
        )
    except Exception:
        for service in reversed(started):
            service.stop()
        raise
    return PrometheusStack(started[1].url, started[0].url, started)


def start_feed(settings: Settings, workdir: Path) -> tuple[list[Service], dict[str, int]]:
    """The simulated exchange, capture from it and the featurizer, as `cryptovol` processes with
    their metrics on free ports. Returns the services and job -> metrics port."""
    env = settings_env(settings)
    exchange_port, capture_port, featurize_port = free_port(), free_port(), free_port()
    services = []
    try:
        services.append(
            start_cli(
                "exchange",
                ["exchange", "--port", str(exchange_port), "--seed", "5"],
                env,
                workdir,
            )
        )
        services.append(
            start_cli(
                "featurizer",
                ["featurize", "--group", f"monitor-{featurize_port}"],
                {**env, "CRYPTOVOL_FEATURIZE_METRICS_PORT": str(featurize_port)},
                workdir,
            )
        )
        wait_for_port(exchange_port, services[0])
        services.append(
            start_cli(
                "capture",
                ["capture", "--url", f"ws://127.0.0.1:{exchange_port}"],
                {**env, "CRYPTOVOL_CAPTURE_METRICS_PORT": str(capture_port)},
                workdir,
            )
        )
        wait_http(f"http://127.0.0.1:{capture_port}/metrics", 30, services[2].proc)
        wait_http(f"http://127.0.0.1:{featurize_port}/metrics", 30, services[1].proc)
    except Exception:
        for service in reversed(services):
            service.stop()
        raise
    return services, {"capture": capture_port, "featurizer": featurize_port}


def wait_for_port(port: int, service: Service, timeout: float = 30.0) -> None:
    from tasks.io.broker import port_open

    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port):
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited; see {service.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.name} did not listen on {port}")
        time.sleep(0.1)


# A simulated market far wilder than the calibrated one: bursts ten times as often, larger and
# uncapped (volatility regimes the default simulator and the real recordings never reach).
WILD_MARKET = ModelParams(burst_rate_per_s=1 / 30, burst_amplitude=1.5, burst_ceiling=3.0)
# A wild market with calm between its spikes: bursts twice as often as the calibrated market's,
# twice as large and shorter (WILD_MARKET never calms down: it is one long spike episode).
SPIKY_MARKET = ModelParams(
    burst_rate_per_s=1 / 150, burst_amplitude=1.2, burst_half_life_s=(15, 45)
)


def model_store_settings(root: Path, **overrides) -> Settings:
    """Settings with a data folder and a SQLite MLflow store under ``root``, nothing pushed."""
    return Settings(
        data_dir=root / "data",
        mlflow_tracking_uri=f"sqlite:///{root / 'store' / 'mlflow.db'}",
        pushgateway_url="",
        **overrides,
    )


# The monitoring tests judge a champion whose scores follow the volatility level. On an hour or
# two of one simulated day, the walk-forward folds put no regression candidate above the
# z-score (scale-free: its scores barely move in a wild market); the HAR classifier is.
MONITORED_CANDIDATES = ("har_logistic", "har_vol", "har_rv", "blend")


def train_champion(settings: Settings, data: list[str]) -> str:
    """Train on ``data`` (contracts skipped: the data is the project's own) and promote the
    result to champion; returns its version."""
    from tasks.core.training import TrainConfig
    from tasks.stages.promote import promote
    from tasks.stages.train import train_and_register

    config = TrainConfig(candidates=MONITORED_CANDIDATES)
    trained = train_and_register(settings, data, config, check_contracts=False)
    promote(settings, trained["version"], force=True, who="test", why="monitoring test")
    return trained["version"]


def stream_through_pipeline(settings: Settings, inputs: list[str], workdir: Path) -> None:
    """Replay recordings onto ``ticks.raw`` as fast as possible, stream them through the
    featurizer, and score every feature record into ``ticks.predictions`` with the champion."""
    from tasks.services.featurizer import run_featurizer
    from tasks.services.replay import run_replay

    run_replay(settings, inputs, speed=None)
    run_featurizer(settings, f"monitor-{uuid.uuid4().hex[:8]}", max_idle_s=4.0, metrics_port=0)
    score_features(settings, workdir)


def score_features(settings: Settings, workdir: Path) -> None:
    """Score ``ticks.features`` into ``ticks.predictions`` with the champion.

    With the serving issue's scorer on this branch, that is `cryptovol score`. Until then, a
    stand-in writes the very records the metrics contract fixes (docs/metrics.md), scored by the
    champion's predictor, so the monitor reads what the scorer will write.
    """
    if importlib.util.find_spec("tasks.services.scorer") is not None:
        scorer = start_cli(
            "scorer",
            ["score", "--max-idle-seconds", "5", "--metrics-port", "0"],
            settings_env(settings),
            workdir,
        )
        assert scorer.proc.wait(300) == 0, scorer.log_path.read_text()[-2000:]
        return
    from tasks.core.features import FEATURE_NAMES
    from tasks.io import model_store, registry, streams
    from tasks.io.kafka import make_producer
    from tasks.io.reference import resolve_model

    model = resolve_model(settings, registry.model_uri(settings))
    predictor = model_store.load_predictor(model.uri)
    values = list(streams.iter_window(settings, settings.features_topic, 0.0))
    records = [json.loads(v) for v in values]
    features = pd.DataFrame(
        [[r["features"].get(n) for n in FEATURE_NAMES] for r in records],
        columns=list(FEATURE_NAMES),
        dtype=float,
    )
    scores = predictor.predict_proba(features)
    producer = make_producer(settings)
    scored_at = pd.Timestamp.now(tz="UTC").isoformat()
    for record, score in zip(records, scores, strict=True):
        prediction = {
            "schema_version": 1,
            "record_id": record["record_id"],
            "product_id": record["product_id"],
            "ts": record["ts"],
            "score": float(score),
            "spike": bool(score >= predictor.threshold),
            "threshold": predictor.threshold,
            "model_name": model.name,
            "model_version": model.version,
            "model_variant": "ml",
            "scored_at": scored_at,
            "latency_ms": 0.0,
        }
        producer.produce(
            settings.predictions_topic,
            key=record["product_id"].encode(),
            value=json.dumps(prediction).encode(),
        )
    producer.flush(30)
