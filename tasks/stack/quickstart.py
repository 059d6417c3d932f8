"""The quickstart: the whole local loop on embedded services, in one process.

Starts the embedded broker and a simulated exchange on loopback, captures through the real client
(with the streaming featurizer running beside it), writes a few hours of simulated history and
replays it through the broker, backfills features and labels with the same engine, checks the data
contracts, then trains, validates and promotes a model in the MLflow registry.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.settings import Settings

log = logging.getLogger("cryptovol.quickstart")

SIM_START = 1767225600.0  # 2026-01-01T00:00:00Z: simulated history, then the live capture's "now"


@dataclass(frozen=True)
class QuickstartOptions:
    capture_minutes: float = 2.0
    history_minutes: float = 240.0
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    seed: int = 7
    broker_port: int = 9092
    train: bool = True
    serve_requests: int = 1000


@dataclass
class QuickstartReport:
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    progress: Callable[[str], None] = log.info  # one line as each stage starts and ends

    def stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one stage; one console line once it is done, saying what it did."""
        log.info("== %s", name)
        start = time.monotonic()
        result = fn()
        self.seconds[name] = round(time.monotonic() - start, 1)
        self.stages[name] = result
        self.progress(f"{name:<10} done in {self.seconds[name]:.1f} s: {sentence(name, result)}")
        return result

    def render(self, settings: Settings) -> str:
        """The summary: what was built and measured, where to look, what to run next."""
        st = self.stages
        lines = ["", "cryptovol quickstart: done", ""]
        backfill = st.get("backfill", {})
        lines.append(
            f"data      {backfill.get('rows', 0)} feature rows, {backfill.get('start')} to "
            f"{backfill.get('end')}, products {', '.join(backfill.get('products', []))}"
        )
        train, registry = st.get("train"), st.get("registry", {}).get("ml", {})
        if train:
            lines.append(
                f"model     volatility-spike v{train['version']} ({train.get('selected', '?')}): "
                f"test PR-AUC {_short(train.get('pr_auc'))} vs persistence "
                f"{_short(train.get('persistence_pr_auc'))} vs z-score "
                f"{_short(train.get('baseline_pr_auc'))} (spike rate "
                f"{_short(train.get('positive_rate'))})"
            )
            decision = st.get("validate", {}).get("decision")
            lines.append(
                f"registry  validation {decision}; champion v{registry.get('champion')}, "
                f"challenger {registry.get('challenger') or 'none'}"
            )
        if "score" in st:
            lines.append(
                f"scored    {st['score'].get('predictions_out', 0)} feature records of the stream "
                f"-> {settings.predictions_topic}"
            )
        if "serve" in st:
            serve = st["serve"]
            lines.append(
                f"serving   {serve['requests']} one-row /predict requests: p50 "
                f"{serve['p50_ms']:.2f} ms, p99 {serve['p99_ms']:.2f} ms (v{serve['version']})"
            )
        if "drift" in st:
            lines.append(
                f"drift     share of drifted features {_short(st['drift']['drift_share'])}; "
                f"report {st['drift']['report']}"
            )
        lines += [
            "",
            "open:",
            f"  drift reports  {st.get('drift', {}).get('index', settings.reports_dir)}"
            "  (or `uv run cryptovol reports`)",
            f"  MLflow         {_registry_hint(settings.tracking_uri)}",
            "  the whole stack: `uv run cryptovol up` serves MLflow http://127.0.0.1:5000, Prefect "
            "http://127.0.0.1:4200, the service http://127.0.0.1:3000, Prometheus "
            "http://127.0.0.1:9090, Alertmanager http://127.0.0.1:9093 (every alert it delivers: "
            f"{settings.alert_inbox_path.resolve()})",
            "next:",
            "  uv run cryptovol promote [VERSION]      # move champion through the gates",
            "  uv run cryptovol rollback --why '...'   # back to the previous champion",
            f"  everything it wrote: {settings.data_dir.resolve()}",
        ]
        return "\n".join(lines)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _promoted(r: dict[str, Any]) -> str:
    if r.get("champion") is None:
        return f"not promoted ({r.get('refused', 'refused')})"
    return f"version {r['champion']} is the champion (validation: {r.get('decision')})"


# What each stage did, as one sentence of its result (the full result is in --json).
SENTENCES: dict[str, Callable[[dict[str, Any]], str]] = {
    "simulate": lambda r: (
        f"{_count(r.get('messages'))} exchange messages of {', '.join(r.get('tickers', {}))} "
        f"simulated into {len(r.get('files', []))} recordings"
    ),
    "replay": lambda r: (
        f"{_count(r.get('tickers'))} tickers replayed onto the broker at "
        f"{r.get('messages_per_s', 0):,.0f} messages/s ({_count(r.get('malformed'))} malformed, "
        f"{_count(r.get('undelivered'))} undelivered)"
    ),
    "capture": lambda r: (
        f"{_count(r.get('tickers'))} live tickers captured from the simulated exchange "
        f"({_count(r.get('reconnects'))} reconnects, {_count(r.get('gaps'))} sequence gaps, "
        f"{_count(r.get('undelivered'))} undelivered)"
    ),
    "backfill": lambda r: (
        f"{_count(r.get('rows'))} feature rows ({_count(r.get('labelled_rows'))} labelled) from "
        f"{_count(r.get('ticks'))} ticks, {_count(r.get('rejected'))} rejected"
    ),
    "contracts": lambda r: (
        f"{_count(r.get('rows'))} feature rows pass the {r.get('suite')} contract "
        f"({_count(r.get('checks'))} checks)"
    ),
    "train": lambda r: (
        f"version {r.get('version')} ({r.get('selected', '?')}) registered: test PR-AUC "
        f"{_short(r.get('pr_auc'))} against persistence {_short(r.get('persistence_pr_auc'))} "
        f"and z-score {_short(r.get('baseline_pr_auc'))}"
    ),
    "validate": lambda r: (
        f"challenger version {r.get('challenger_version')}: {r.get('decision')} ({r.get('reason')})"
    ),
    "promote": _promoted,
    "score": lambda r: (
        f"{_count(r.get('predictions_out'))} feature records of the stream scored, "
        f"{_count(r.get('spikes'))} spikes predicted"
    ),
    "serve": lambda r: (
        f"{_count(r.get('requests'))} one-row /predict requests to version {r.get('version')}: "
        f"p50 {r.get('p50_ms', 0):.2f} ms, p99 {r.get('p99_ms', 0):.2f} ms"
    ),
    "drift": lambda r: (
        f"share of drifted features {_short(r.get('drift_share'))}, report {r.get('report')}"
    ),
}


def sentence(stage: str, result: dict[str, Any]) -> str:
    describe = SENTENCES.get(stage)
    return describe(result) if describe else "done"


def _registry_hint(uri: str) -> str:
    if uri.startswith("sqlite:"):
        return f"uv run mlflow ui --backend-store-uri {uri}"
    return uri


def _short(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def embedded_broker(settings: Settings, port: int) -> Iterator[Settings]:
    """Reuse a reachable broker at the configured address, or start the embedded one."""
    from tasks.io.broker import free_port, port_open, start_broker, stop_broker
    from tasks.io.kafka import BrokerUnavailable, ensure_topics, require_broker

    try:
        require_broker(settings, timeout=2)
        log.info("using the broker already at %s", settings.kafka_bootstrap_servers)
        ensure_topics(settings)
        yield settings
        return
    except BrokerUnavailable:
        pass
    if port_open("127.0.0.1", port):
        port = free_port()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    proc = start_broker("127.0.0.1", port, log_path=settings.data_dir / "broker.log")
    local = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port}"})
    try:
        ensure_topics(local)
        log.info("embedded broker on %s", local.kafka_bootstrap_servers)
        yield local
    finally:
        stop_broker(proc)


@contextlib.contextmanager
def background_featurizer(settings: Settings) -> Iterator[dict[str, Any]]:
    from tasks.services.featurizer import run_featurizer

    stop = threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        result.update(run_featurizer(settings, stop_event=stop, metrics_port=0).as_dict())

    thread = threading.Thread(target=work, name="featurizer", daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(60)


def wait_for_features(stats: Callable[[], dict[str, Any]], timeout: float) -> None:
    """Wait until the featurizer has gone quiet (its output count stops moving)."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline and still < 3:
        now = stats().get("features_out", 0)
        still = still + 1 if now == last else 0
        last = now
        time.sleep(1)


def run_quickstart(
    settings: Settings,
    options: QuickstartOptions,
    progress: Callable[[str], None] = log.info,
) -> QuickstartReport:
    from tasks.services.capture import run_capture
    from tasks.services.replay import run_replay
    from tasks.sim.exchange import ExchangeServer, ExchangeThread, simulator_ticks
    from tasks.sim.writer import write_recordings
    from tasks.stages.backfill import run_backfill

    report = QuickstartReport(progress=progress)
    data_dir = settings.data_dir
    history_dir = data_dir / "simulated"
    features_dir = settings.feature_store_dir
    history_end = SIM_START + options.history_minutes * 60

    with embedded_broker(settings, options.broker_port) as kafka:
        ticks = simulator_ticks(options.products, options.seed, history_end)
        server = ExchangeServer(ticks, speed=1.0)
        with background_featurizer(kafka) as featurized:
            # History first, then the live capture continues it: the stream stays in event time.
            report.stage(
                "simulate",
                lambda: _sim_summary(
                    write_recordings(
                        history_dir,
                        options.products,
                        seed=options.seed,
                        start=SIM_START,
                        minutes=options.history_minutes,
                    )
                ),
            )
            report.stage("replay", lambda: run_replay(kafka, [history_dir], speed=None).summary())
            with ExchangeThread(server) as exchange:
                report.stage(
                    "capture",
                    lambda: run_capture(
                        kafka,
                        url=exchange.url,
                        products=list(options.products),
                        minutes=options.capture_minutes,
                        metrics_port=0,
                    ).summary(),
                )
            wait_for_features(lambda: featurized, timeout=120)
        report.stages["featurize"] = dict(featurized)

        report.stage(
            "backfill",
            lambda: run_backfill(
                settings, [history_dir, settings.archive_dir], features_dir
            ).as_dict(),
        )
        report.stage("contracts", lambda: _check_features(features_dir))
        if not options.train:
            return report
        _train_stages(settings, features_dir, report)
        if report.stages["registry"]["ml"]["champion"] is None:
            progress("no champion: the challenger was refused, so nothing is served or scored")
            return report
        report.stage("score", lambda: _score_stream(kafka))
    report.stage("serve", lambda: _serve_and_measure(settings, features_dir, options))
    report.stage("drift", lambda: _drift_report(settings, features_dir))
    return report


def _score_stream(settings: Settings) -> dict[str, Any]:
    """The scorer over every feature record the stream produced, until it goes idle."""
    from tasks.services.scorer import run_scorer

    stats = run_scorer(settings, max_idle_s=5.0, metrics_port=0)
    return stats.as_dict()


def _serve_and_measure(
    settings: Settings, features_dir: Path, options: QuickstartOptions
) -> dict[str, Any]:
    """``bentoml serve`` on a free port for the champion; 1,000 one-row requests, p50 and p99."""
    import json
    import os
    import subprocess
    import urllib.request

    import numpy as np

    from tasks.io.broker import free_port
    from tasks.io.feature_store import load_dataset
    from tasks.stack.servers import PROJECT_DIR, tool_path, wait_http

    port = free_port()
    log_path = settings.data_dir / "bentoml.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CRYPTOVOL_DATA_DIR": str(settings.data_dir.resolve()),
        "BENTOML_HOME": str((settings.data_dir / "bentoml").resolve()),
    }
    cmd = [tool_path("bentoml"), "serve", "bentos.service:VolatilityService", "--port", str(port)]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_DIR,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", 120, proc)
        with urllib.request.urlopen(f"{url}/version", timeout=5) as response:
            version = json.load(response)
        with urllib.request.urlopen(f"{url}/features", timeout=5) as response:
            names = [f["name"] for f in json.load(response)["features"]]
        rows = load_dataset(features_dir)[names].tail(options.serve_requests)
        bodies = [
            json.dumps({"rows": [{k: v for k, v in row.items() if v == v}]}).encode()
            for row in rows.to_dict("records")
        ]
        times = []
        for body in bodies:
            request = urllib.request.Request(
                f"{url}/predict", body, {"Content-Type": "application/json"}
            )
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
            times.append((time.perf_counter() - started) * 1000.0)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "version": version["version"],
        "requests": len(times),
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
    }


def _drift_report(settings: Settings, features_dir: Path) -> dict[str, Any]:
    """A drift check of the feature store against the champion's training sample."""
    from monitoring.check import run_check

    result = run_check(
        settings, current=[str(features_dir)], live=False, push=False, log_to_mlflow=True
    )
    return {
        "report": str(result.report),
        "index": str(result.index),
        "drift_share": result.entry["drift"].get("share"),
    }


def _sim_summary(summary: Any) -> dict[str, Any]:
    return {
        "files": [str(p) for p in summary.files],
        "messages": summary.messages,
        "tickers": dict(summary.tickers),
        "first": summary.first_ts,
        "last": summary.last_ts,
    }


def _check_features(features_dir: Path) -> dict[str, Any]:
    from data_contracts.validate import validate_frame
    from tasks.io.feature_store import load_dataset

    outcome = validate_frame("features", load_dataset(features_dir), sources=[str(features_dir)])
    if not outcome.success:
        raise RuntimeError(f"the backfilled features break their contract:\n{outcome.table()}")
    return {"suite": outcome.suite, "rows": outcome.rows, "checks": len(outcome.outcomes)}


def _train_stages(settings: Settings, features_dir: Path, report: QuickstartReport) -> None:
    """Train a challenger, gate it on the recent window it did not see, promote it if it passes."""
    from tasks.io.registry import RegistryError, describe_aliases
    from tasks.stages.promote import promote
    from tasks.stages.train import train_and_register
    from tasks.stages.validate import validate_challenger

    data = [str(features_dir)]
    trained = report.stage("train", lambda: _train_summary(train_and_register(settings, data)))
    outcome = report.stage("validate", lambda: validate_challenger(settings, data).to_dict())

    def promotion() -> dict[str, Any]:
        try:
            change = promote(settings, trained["version"], who="quickstart", why="quickstart")
        except RegistryError as exc:
            return {"decision": outcome["decision"], "champion": None, "refused": str(exc)}
        return {"decision": outcome["decision"], **change.to_dict()}

    report.stage("promote", promotion)
    report.stages["registry"] = describe_aliases(settings)


def _train_summary(result: dict[str, Any]) -> dict[str, Any]:
    metrics = result.get("metrics", {})
    return {
        "version": result["version"],
        "run_id": result.get("run_id"),
        "selected": result.get("selected"),
        **metrics,
    }
