"""Prometheus and the Pushgateway as child processes (Debian packages, see infra/setup.sh).

The local stack and the tests start them the same way: a listen address on 127.0.0.1, storage in a
folder of their own, and a Prometheus configuration rendered from
``monitoring/prometheus/prometheus.yml`` with the scrape targets and intervals of the moment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tasks.stack.servers import Service, wait_http

PROMETHEUS_DIR = Path(__file__).resolve().parent / "prometheus"
CONFIG_TEMPLATE = PROMETHEUS_DIR / "prometheus.yml"


class ToolMissing(RuntimeError):
    """A Debian package the monitoring stack needs is not installed."""


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} not found: run infra/setup.sh (Debian package {name})")
    return path


def render_config(
    out: Path,
    targets: dict[str, str | None],
    *,
    interval_s: float | None = None,
    template: Path = CONFIG_TEMPLATE,
    alertmanager: str | None = None,
) -> Path:
    """``template`` with each job's target replaced (``None`` drops the job), rule files made
    absolute, alerts sent to ``alertmanager`` (host:port; ``None``: to none), and optionally a
    shorter scrape and evaluation interval. Returns ``out``."""
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(f"no such scrape jobs in {template.name}: {sorted(unknown)}")
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name in targets:
            if targets[name] is None:
                continue
            job["static_configs"] = [{"targets": [targets[name]]}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    config.pop("alerting", None)
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config["rule_files"] = [str((template.parent / f).resolve()) for f in config["rule_files"]]
    if interval_s is not None:
        config["global"]["scrape_interval"] = f"{interval_s:g}s"
        config["global"]["evaluation_interval"] = f"{interval_s:g}s"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _spawn(name: str, cmd: list[str], url: str, log_path: Path, ready: str) -> Service:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True
        )
    service = Service(name, proc, url, log_path)
    try:
        wait_http(f"{url}{ready}", 30.0, proc)
    except Exception:
        service.stop()
        raise
    return service


def start_prometheus(config: Path, port: int, storage: Path, log_path: Path) -> Service:
    """Prometheus on 127.0.0.1:``port`` with its TSDB in ``storage``; returns once it is ready."""
    storage.mkdir(parents=True, exist_ok=True)
    cmd = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    return _spawn("prometheus", cmd, f"http://127.0.0.1:{port}", log_path, "/-/ready")


def start_pushgateway(port: int, log_path: Path) -> Service:
    """The Pushgateway on 127.0.0.1:``port`` (in memory: no persistence file)."""
    cmd = [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"]
    return _spawn("pushgateway", cmd, f"http://127.0.0.1:{port}", log_path, "/-/ready")


def query(prometheus_url: str, expr: str, timeout: float = 10.0) -> list[dict]:
    """The result of an instant query through Prometheus's HTTP API (a list of samples)."""
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=timeout)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise ValueError(f"query {expr!r} failed: {body.get('error', response.text)}")
    return body["data"]["result"]


def alerts(prometheus_url: str, timeout: float = 10.0) -> list[dict]:
    """The alerts Prometheus holds now (pending and firing)."""
    response = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=timeout)
    response.raise_for_status()
    return response.json()["data"]["alerts"]


def start_alertmanager(config: Path, port: int, storage: Path, log_path: Path) -> Service:
    """Alertmanager on 127.0.0.1:``port`` (no cluster) with its state in ``storage``; returns
    once it is ready. ``config``: rendered by :func:`monitoring.alerting.render_config`."""
    from monitoring.alerting import alertmanager_argv

    storage.mkdir(parents=True, exist_ok=True)
    cmd = list(alertmanager_argv(binary("prometheus-alertmanager"), config, port, storage))
    return _spawn("alertmanager", cmd, f"http://127.0.0.1:{port}", log_path, "/-/ready")
