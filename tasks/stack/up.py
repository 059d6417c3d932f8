"""``cryptovol up``: the whole local stack, in order, each part health-checked before the next.

broker -> MLflow -> Prefect server, work pool, deployments, worker -> featurizer -> (a champion,
trained from the bundled simulator when the registry has none) -> scorer -> BentoML service ->
Pushgateway, the alert inbox, Alertmanager and Prometheus. A part configured elsewhere
(``KAFKA_BOOTSTRAP_SERVERS``, ``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL``) is used instead of
started.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tasks.settings import Settings
from tasks.stack.servers import PROJECT_DIR, tool_path
from tasks.stack.supervisor import Part, Stack, StackError, healthy

log = logging.getLogger("cryptovol.stack")

WORK_POOL = "cryptovol"
PROMETHEUS_CONFIG = PROJECT_DIR / "monitoring" / "prometheus" / "prometheus.yml"
BOOTSTRAP_MINUTES = 240


def stack_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "stack"


def state_path(settings: Settings) -> Path:
    return stack_dir(settings) / "state.json"


@dataclass(frozen=True)
class Endpoints:
    """Where each shared server is: started here, or configured elsewhere (``external``)."""

    kafka: str
    mlflow: str
    prefect_api: str
    external: dict[str, str]

    @classmethod
    def of(cls, settings: Settings, environ: dict[str, str] | None = None) -> Endpoints:
        environ = os.environ if environ is None else environ
        external = {}
        kafka = f"127.0.0.1:{_broker_port(settings)}"
        if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            kafka = external["broker"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        mlflow = f"http://127.0.0.1:{settings.mlflow_port}"
        if environ.get("MLFLOW_TRACKING_URI"):
            mlflow = external["mlflow"] = environ["MLFLOW_TRACKING_URI"]
        prefect = f"http://127.0.0.1:{settings.prefect_port}/api"
        if environ.get("PREFECT_API_URL"):
            prefect = external["prefect"] = environ["PREFECT_API_URL"]
        return cls(kafka, mlflow, prefect, external)

    def env(self, settings: Settings) -> dict[str, str]:
        """The variables every part and every flow run gets."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "MLFLOW_TRACKING_URI": self.mlflow,
            "PREFECT_API_URL": self.prefect_api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_HOME": str(stack_dir(settings) / "prefect"),
            "CRYPTOVOL_DATA_DIR": str(settings.data_dir.resolve()),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
        }


def _broker_port(settings: Settings) -> int:
    return int(settings.kafka_bootstrap_servers.rsplit(":", 1)[-1])


def alertmanager_url(settings: Settings) -> str:
    """The Alertmanager the scorer sends to: the configured one, else the one ``up`` starts."""
    return settings.alertmanager_url or f"http://127.0.0.1:{settings.alertmanager_port}"


def _pushgateway_port(settings: Settings) -> int:
    return urlsplit(settings.pushgateway_url or "http://127.0.0.1:9091").port or 9091


def server_parts(settings: Settings, endpoints: Endpoints) -> list[Part]:
    """The shared servers this stack starts itself (the ones not configured elsewhere)."""
    env = endpoints.env(settings)
    base = stack_dir(settings)
    parts = []
    if "broker" not in endpoints.external:
        port = _broker_port(settings)
        parts.append(
            Part(
                "broker",
                (tool_path("cryptovol"), "broker", "--port", str(port)),
                port=port,
                url=endpoints.kafka,
                env=env,
                hint="Stop the other broker, or set KAFKA_BOOTSTRAP_SERVERS to use it.",
            )
        )
    if "mlflow" not in endpoints.external:
        store = settings.data_dir.resolve()
        parts.append(
            Part(
                "mlflow",
                (
                    tool_path("mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(settings.mlflow_port),
                    "--backend-store-uri",
                    f"sqlite:///{store / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(store / "mlartifacts"),
                    "--workers",
                    "1",
                ),
                port=settings.mlflow_port,
                health_url=f"{endpoints.mlflow}/health",
                url=endpoints.mlflow,
                env=env,
                start_timeout_s=120,
                hint="Stop the other MLflow server, or set MLFLOW_TRACKING_URI to use it.",
            )
        )
    if "prefect" not in endpoints.external:
        parts.append(
            Part(
                "prefect",
                (
                    tool_path("prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(settings.prefect_port),
                ),
                port=settings.prefect_port,
                health_url=f"{endpoints.prefect_api}/health",
                url=endpoints.prefect_api.removesuffix("/api"),
                env={**env, "PREFECT_HOME": str(base / "prefect")},
                start_timeout_s=120,
                hint="Stop the other Prefect server, or set PREFECT_API_URL to use it.",
            )
        )
    return parts


def worker_part(settings: Settings, endpoints: Endpoints) -> Part:
    return Part(
        "worker",
        (tool_path("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"),
        url=f"pool {WORK_POOL}",
        env=endpoints.env(settings),
    )


def stream_parts(settings: Settings, endpoints: Endpoints) -> list[Part]:
    """Featurizer, scorer and service: they need the broker and a champion in the registry."""
    env = endpoints.env(settings)
    host = settings.metrics_host
    return [
        Part(
            "featurizer",
            (tool_path("cryptovol"), "featurize"),
            port=settings.featurize_metrics_port,
            health_url=f"http://{host}:{settings.featurize_metrics_port}/metrics",
            url=f"http://{host}:{settings.featurize_metrics_port}/metrics",
            env=env,
        ),
        Part(
            "scorer",
            (tool_path("cryptovol"), "score"),
            port=settings.scorer_metrics_port,
            health_url=f"http://{host}:{settings.scorer_metrics_port}/metrics",
            url=f"http://{host}:{settings.scorer_metrics_port}/metrics",
            env={**env, "CRYPTOVOL_ALERTMANAGER_URL": alertmanager_url(settings)},
        ),
        Part(
            "service",
            (
                tool_path("bentoml"),
                "serve",
                "bentos.service:VolatilityService",
                "--host",
                "127.0.0.1",
                "--port",
                str(settings.service_port),
            ),
            port=settings.service_port,
            health_url=f"http://127.0.0.1:{settings.service_port}/health",
            url=f"http://127.0.0.1:{settings.service_port}",
            env=env,
            start_timeout_s=120,
        ),
    ]


def monitoring_parts(settings: Settings, endpoints: Endpoints) -> list[Part]:
    """The Pushgateway the monitor flow pushes to, the alert inbox and Alertmanager, and
    Prometheus (scraping the parts above, alerting through Alertmanager)."""
    env = endpoints.env(settings)
    parts = []
    prometheus, pushgateway = shutil.which("prometheus"), shutil.which("prometheus-pushgateway")
    missing = [n for n, p in (("prometheus", prometheus), ("pushgateway", pushgateway)) if not p]
    if missing:
        raise StackError(
            f"{' and '.join(missing)} not installed: run `bash infra/setup.sh` "
            "(Debian packages prometheus, prometheus-pushgateway)"
        )
    parts.append(
        Part(
            "pushgateway",
            (pushgateway, f"--web.listen-address=127.0.0.1:{_pushgateway_port(settings)}"),
            port=_pushgateway_port(settings),
            health_url=f"http://127.0.0.1:{_pushgateway_port(settings)}/-/ready",
            url=f"http://127.0.0.1:{_pushgateway_port(settings)}",
            env=env,
        )
    )
    parts += alerting_parts(settings, env)
    parts.append(
        Part(
            "prometheus",
            (
                prometheus,
                f"--config.file={prometheus_config(settings)}",
                f"--storage.tsdb.path={stack_dir(settings) / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
            ),
            port=settings.prometheus_port,
            health_url=f"http://127.0.0.1:{settings.prometheus_port}/-/ready",
            url=f"http://127.0.0.1:{settings.prometheus_port}",
            env=env,
        )
    )
    return parts


def prometheus_config(settings: Settings) -> Path:
    """``monitoring/prometheus/prometheus.yml`` rendered with this stack's ports: its scrape
    targets and the Alertmanager it starts."""
    from monitoring.servers import render_config

    local = "127.0.0.1"
    targets = {
        "prometheus": f"{local}:{settings.prometheus_port}",
        "service": f"{local}:{settings.service_port}",
        "capture": f"{local}:{settings.capture_metrics_port}",
        "featurizer": f"{local}:{settings.featurize_metrics_port}",
        "scorer": f"{local}:{settings.scorer_metrics_port}",
        "pushgateway": f"{local}:{_pushgateway_port(settings)}",
    }
    return render_config(
        stack_dir(settings) / "prometheus.yml",
        targets,
        template=PROMETHEUS_CONFIG,
        alertmanager=f"{local}:{settings.alertmanager_port}",
    )


def alerting_parts(settings: Settings, env: dict[str, str]) -> list[Part]:
    """The local inbox (the default receiver, writing to a file) and Alertmanager delivering to it
    and to the receivers configured in the environment (``monitoring/alerting.py``). The scorer
    starts before them: its spike alerts wait in its outbox until Alertmanager answers."""
    from monitoring.alerting import alertmanager_argv, inbox_url, render_config

    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        raise StackError(
            "prometheus-alertmanager not installed: run `bash infra/setup.sh` "
            "(Debian package prometheus-alertmanager)"
        )
    config = render_config(settings, stack_dir(settings) / "alertmanager.yml")
    port = settings.alertmanager_port
    return [
        Part(
            "inbox",
            (
                tool_path("cryptovol"),
                "alert-inbox",
                "--port",
                str(settings.alert_inbox_port),
                "--out",
                str(settings.alert_inbox_path.resolve()),
            ),
            port=settings.alert_inbox_port,
            health_url=inbox_url(settings),
            url=str(settings.alert_inbox_path.resolve()),
            env=env,
        ),
        Part(
            "alertmanager",
            alertmanager_argv(binary, config, port, stack_dir(settings) / "alertmanager"),
            port=port,
            health_url=f"http://127.0.0.1:{port}/-/ready",
            url=f"http://127.0.0.1:{port}",
            env=env,
        ),
    ]


def deploy_flows(settings: Settings, endpoints: Endpoints, report: Callable[[str], None]) -> None:
    """The process work pool (once) and every deployment of ``prefect.yaml``."""
    env = {**os.environ, **endpoints.env(settings)}
    log_path = stack_dir(settings) / "logs" / "prefect-deploy.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        subprocess.run(
            [tool_path("prefect"), "work-pool", "create", WORK_POOL, "--type", "process"],
            env=env,
            cwd=PROJECT_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,  # exists already: fine
        )
        done = subprocess.run(
            [tool_path("prefect"), "--no-prompt", "deploy", "--all"],
            env=env,
            cwd=PROJECT_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise StackError(f"prefect deploy --all failed; its output: {log_path}")
    report(f"{'deployments':<12} registered from prefect.yaml (pool {WORK_POOL})")


def ensure_champion(
    settings: Settings, report: Callable[[str], None], minutes: float = BOOTSTRAP_MINUTES
) -> str:
    """The champion's version; with none yet, one trained on the bundled simulator, saying so."""
    from tasks.io.registry import CHAMPION, alias_version, connect, model_name

    client = connect(settings)
    version = alias_version(client, model_name(settings), CHAMPION)
    if version is not None:
        return version
    from tasks.sim.writer import write_recordings
    from tasks.stages.promote import promote
    from tasks.stages.train import train_and_register
    from tasks.stages.validate import validate_challenger

    report(
        f"{'champion':<12} none in the registry yet: training one on {minutes:g} min of "
        "the bundled simulator first (retrain on real data: `prefect deployment run train/train`)"
    )
    history = settings.data_dir / "simulated-bootstrap"
    if not history.exists():
        write_recordings(history, settings.products, seed=7, minutes=minutes)
    trained = train_and_register(settings, [str(history)])
    outcome = validate_challenger(settings, [str(history)])
    forced = outcome.decision.decision != "pass"
    why = "bootstrap from the simulator" + (
        f"; forced: validation said {outcome.decision.reason()}" if forced else ""
    )
    promote(settings, trained["version"], force=forced, who="cryptovol up", why=why)
    report(f"{'champion':<12} version {trained['version']} promoted ({why})")
    return trained["version"]


def bring_up(
    settings: Settings,
    stack: Stack,
    report: Callable[[str], None],
    *,
    with_monitoring: bool = True,
    bootstrap_minutes: float = BOOTSTRAP_MINUTES,
) -> None:
    """Start every part in order; on any failure the caller stops what was started."""
    endpoints = Endpoints.of(settings)
    stack.external = endpoints.external
    for name, address in endpoints.external.items():
        report(f"{name:<12} using {address} (configured in the environment)")
    for part in server_parts(settings, endpoints):
        stack.start(part, report)
    deploy_flows(settings, endpoints, report)
    stack.start(worker_part(settings, endpoints), report)
    served = settings.model_copy(  # the champion bootstrap talks to the same servers
        update={"kafka_bootstrap_servers": endpoints.kafka, "mlflow_tracking_uri": endpoints.mlflow}
    )
    stream = stream_parts(served, endpoints)
    stack.start(stream[0], report)  # the featurizer does not need a model
    ensure_champion(served, report, bootstrap_minutes)
    for part in stream[1:]:
        stack.start(part, report)
    if with_monitoring:
        for part in monitoring_parts(served, endpoints):
            stack.start(part, report)


def status(settings: Settings) -> list[dict]:
    """Each part the state file lists (or the default ports when none): URL, pid, health."""
    from tasks.stack.supervisor import alive, load_state

    state = load_state(state_path(settings))
    rows = []
    if state is None:
        endpoints = Endpoints.of(settings)
        parts = server_parts(settings, endpoints) + stream_parts(settings, endpoints)
        for part in parts:
            rows.append(
                {
                    "name": part.name,
                    "url": part.url,
                    "pid": None,
                    "healthy": healthy(part.health_url, part.port),
                    "managed": False,
                }
            )
        return rows
    for name, address in state.get("external", {}).items():
        rows.append({"name": name, "url": address, "pid": None, "healthy": None, "managed": False})
    for running in state.get("running", []):
        up = alive(running["pid"])
        rows.append(
            {
                "name": running["name"],
                "url": running["url"],
                "pid": running["pid"],
                "healthy": up
                and (running["port"] is None or healthy(running["health_url"], running["port"])),
                "managed": True,
                "log": running["log_path"],
            }
        )
    return rows
