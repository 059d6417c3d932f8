"""Every Grafana panel's query, run through a real Prometheus's HTTP API, returns data.

Grafana itself does not run here (no Debian package, no Docker engine), so the dashboards are
checked where their data comes from: a real Prometheus and Pushgateway (Debian packages) scrape
the project's real processes (`cryptovol exchange`, `capture`, `featurize`) over loopback on free
ports, and every target of every panel must return at least one finite sample.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from monitoring_support import (
    TARGETS,
    model_store_settings,
    settings_env,
    source_of,
    start_cli,
    start_feed,
    start_prometheus_stack,
    train_champion,
    wait_until,
)

from monitoring.grafana.dashboards import DASHBOARD_DIR, DASHBOARDS, DATASOURCE, rendered
from tasks.io.broker import free_port
from tasks.sim.writer import write_recordings
from tasks.stack.servers import PROJECT_DIR, Service, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRAFANA_DIR = DASHBOARD_DIR.parent
# The monitor's pushed figures are checked in test_monitoring_e2e.py, after real checks pushed them.
RUNNING = {"capture", "featurizer", "service", "scorer", "slo"}
FEED_TARGETS = [p for p in TARGETS if source_of(p.values[3]) != "monitor"]


@pytest.fixture(scope="module")
def prometheus(broker_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dashboards")
    suffix = uuid.uuid4().hex[:8]
    settings = model_store_settings(
        workdir,
        kafka_bootstrap_servers=broker_address,
        raw_topic=f"ticks.raw.{suffix}",
        features_topic=f"ticks.features.{suffix}",
        predictions_topic=f"ticks.predictions.{suffix}",
        dlq_topic=f"ticks.raw.dlq.{suffix}",
    )
    history = workdir / "history"
    write_recordings(history, ("BTC-USD",), seed=3, minutes=80)
    train_champion(settings, [str(history)])
    feed, ports = start_feed(settings, workdir)
    scorer_port, service_port = free_port(), free_port()
    env = settings_env(settings)
    feed.append(
        start_cli(
            "scorer",
            ["score", "--group", f"dashboards-{scorer_port}"],
            {**env, "CRYPTOVOL_SCORER_METRICS_PORT": str(scorer_port)},
            workdir,
        )
    )
    feed.append(start_service(env, service_port, workdir))
    stop_requests = threading.Event()
    requests = threading.Thread(
        target=send_requests, args=(service_port, stop_requests), daemon=True
    )
    stack = None
    try:
        wait_http(f"http://127.0.0.1:{service_port}/health", 120, feed[-1].proc)
        requests.start()
        stack = start_prometheus_stack(
            workdir,
            {
                "capture": f"127.0.0.1:{ports['capture']}",
                "featurizer": f"127.0.0.1:{ports['featurizer']}",
                "service": f"127.0.0.1:{service_port}",
                "scorer": f"127.0.0.1:{scorer_port}",
            },
        )
        for query in (
            "sum(rate(cryptovol_featurize_features_out_total[1m])) > 0",
            "sum(rate(cryptovol_scorer_predictions_out_total[1m])) > 0",
            "sum(rate(cryptovol_service_requests_total[1m])) > 0",
        ):
            assert wait_until(lambda q=query: stack.value(q), 90), f"{query}; logs in {workdir}"
        yield stack
    finally:
        stop_requests.set()
        if stack is not None:
            stack.stop()
        for service in reversed(feed):
            service.stop()


def start_service(env: dict[str, str], port: int, workdir: Path) -> Service:
    """``bentoml serve`` for the champion, as a user starts it, on a free port."""
    log_path = workdir / "service.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("bentoml")),
                "serve",
                "bentos.service:VolatilityService",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "CRYPTOVOL_MODEL_POLL_S": "2"},
            cwd=PROJECT_DIR,
            start_new_session=True,
        )
    return Service("service", proc, f"http://127.0.0.1:{port}", log_path)


def send_requests(port: int, stop: threading.Event) -> None:
    """Traffic for the service's panels: valid rows, and now and then a bad one (a 4xx)."""
    url = f"http://127.0.0.1:{port}/predict"
    good = json.dumps({"rows": [{"realized_vol_60": 0.4, "ret_std": 0.01, "n": 50}]}).encode()
    bad = json.dumps({"rows": [{"realized_vol_60": "high"}]}).encode()
    sent = 0
    while not stop.wait(0.1):
        body = bad if sent % 10 == 9 else good
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except urllib.error.HTTPError:
            pass  # the 4xx is the point
        except OSError:
            return
        sent += 1


@pytest.mark.parametrize(("dashboard", "title", "ref", "expr"), FEED_TARGETS)
def test_panel_query_returns_data(prometheus, dashboard, title, ref, expr):
    source = source_of(expr)
    if source not in RUNNING:
        pytest.skip(f"{source} metrics are not exported on this branch yet")

    def finite_samples():
        return [s for s in prometheus.query(expr) if s["value"][1] not in ("NaN", "+Inf", "-Inf")]

    samples = wait_until(finite_samples, timeout=20)
    assert samples, f"{dashboard} / {title} / {ref}: no data for {expr}"


def test_every_query_has_one_known_source():
    sources = {source_of(p.values[3]) for p in TARGETS}
    assert sources == {"capture", "featurizer", "service", "scorer", "monitor", "slo"}


def test_dashboard_files_are_the_generated_ones():
    for name, text in rendered().items():
        path = DASHBOARD_DIR / name
        assert path.read_text() == text, f"{path} differs: python -m monitoring.grafana.dashboards"


def test_dashboards_are_the_issue_s_four_with_unique_uids_and_panel_ids():
    models = [json.loads((DASHBOARD_DIR / f"{key}.json").read_text()) for key in DASHBOARDS]
    assert {m["title"] for m in models} == {
        "cryptovol / Service",
        "cryptovol / Pipeline",
        "cryptovol / Model",
        "cryptovol / SLOs and spike alerts",
    }
    assert len({m["uid"] for m in models}) == 4
    for model in models:
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            assert panel["datasource"] == DATASOURCE
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    model = next(m for m in models if m["uid"] == "cryptovol-model")
    assert any(link.get("url", "").endswith("/drift/index.html") for link in model["links"])


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid():
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert [d["uid"] for d in datasources] == [DATASOURCE["uid"]]
    assert datasources[0]["type"] == "prometheus"
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "cryptovol.yml").read_text()
    )["providers"]
    assert providers[0]["type"] == "file"
    assert Path(providers[0]["options"]["path"]).name == "cryptovol"


def test_every_metric_the_dashboards_and_alerts_use_is_documented():
    root = GRAFANA_DIR.parents[1]
    documented = set(
        re.findall(r"`(cryptovol_[a-z0-9_]+)`", (root / "docs/metrics.md").read_text())
    )
    used_text = (root / "monitoring/prometheus/alerts.yml").read_text() + "".join(
        rendered().values()
    )
    used = {
        re.sub(r"_bucket$", "", name) for name in re.findall(r"cryptovol_[a-z0-9_]+", used_text)
    }
    used -= {"cryptovol_monitor"}  # the pushed job's name, not a metric
    assert used - documented == set()
