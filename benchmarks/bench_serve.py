"""Serving: the BentoML service against a FastAPI twin, and a tick's way to its prediction.

The real model first: trained on ../shared/data (a simulated recording when it is absent) into a
temporary MLflow store, and promoted. Then each HTTP server runs pinned to CPU 0 while this
process, the load generator (a keep-alive asyncio HTTP/1.1 client), runs pinned to CPU 1:

- ``sequential``: 1,000 one-row ``/predict`` requests on one connection: p50, p99;
- ``c32``: 32 connections sending one-row requests back to back: requests/s, p50, p99;
- ``rows1000``: 1,000-row requests on 2 connections: rows/s;

each three times, the median trial reported (with every trial's rate);

for ``bentoml serve bentos.service:VolatilityService`` and for ``benchmarks/fastapi_app.py``
(the same schema, scoring function and model under plain FastAPI/uvicorn). The model alone
(``predict_array``) is timed too, so the cost of each layer shows.

End to end (``e2e``): the embedded broker, ``cryptovol featurize`` and ``cryptovol score`` on CPU 0
and ``cryptovol replay`` plus a reader of ``ticks.predictions`` on CPU 1. A tick's latency is the
time its prediction is read minus the Kafka timestamp of the tick on ``ticks.raw`` (set when
replay produced it), at the recording's own pace (``--live-seconds`` of it) and at ``--speed max``;
each run's first tick, which waits for the new replay process's producer to connect, is
reported apart.

``--ablation`` also serves the model under BentoML from its defaults to this project's settings,
one setting at a time. Prints one JSON object.

    uv run python benchmarks/bench_serve.py [--seconds 5] [--live-seconds 60] [--ablation]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared" / "data" / "coinbase-btc-usd-2025-12"
SERVER_CPU, CLIENT_CPU = 0, 1


# -- the load generator ----------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request, then its whole response, then the next."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    async def send(self, raw: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def post(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _client(port, raw, until, count, latencies, failures) -> None:
    _, conn = await asyncio.get_running_loop().create_connection(_Connection, "127.0.0.1", port)
    sent = 0
    while (count is None and time.perf_counter() < until) or (count is not None and sent < count):
        started = time.perf_counter_ns()
        status = await conn.send(raw)
        latencies.append(time.perf_counter_ns() - started)
        if status != 200:
            failures.append(status)
        sent += 1
    conn.transport.close()


def load(port: int, raw: bytes, clients: int, *, seconds=None, count=None) -> dict:
    """Closed-loop load: ``clients`` connections, each for ``seconds`` or ``count`` requests."""

    async def main():
        latencies, failures = [], []
        until = time.perf_counter() + (seconds or 0)
        started = time.perf_counter()
        await asyncio.gather(
            *(_client(port, raw, until, count, latencies, failures) for _ in range(clients))
        )
        return latencies, failures, time.perf_counter() - started

    latencies, failures, elapsed = asyncio.run(main())
    ms = np.asarray(latencies) / 1e6
    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "failed": len(failures),
    }


def _median_of(trials: list[dict]) -> dict:
    """The trial with the median requests/s (its own percentiles), and every trial's rate:
    other people's processes share the machine, and one trial can catch their burst."""
    ordered = sorted(trials, key=lambda t: t["requests_per_s"])
    return {
        **ordered[len(ordered) // 2],
        "trials_requests_per_s": [t["requests_per_s"] for t in trials],
    }


def http_figures(port: int, one_row: bytes, big: bytes, seconds: float, trials: int = 3) -> dict:
    """The three loads on a server, each ``trials`` times; bodies are ``{"rows": [...]}``."""
    one_row, big = post(port, "/predict", one_row), post(port, "/predict", big)
    load(port, one_row, 1, count=300)  # warm-up
    load(port, one_row, 32, seconds=2)
    sequential = _median_of([load(port, one_row, 1, count=1000) for _ in range(trials)])
    c32 = _median_of([load(port, one_row, 32, seconds=seconds) for _ in range(trials)])
    rows = _median_of([load(port, big, 2, seconds=seconds / 2) for _ in range(trials)])
    rows["rows_per_s"] = round(rows["requests_per_s"] * 1000)
    return {"sequential": sequential, "c32": c32, "rows1000": rows}


# -- servers ---------------------------------------------------------------------------------


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


# Decided once, before this process pins itself to the client's CPU.
PIN = len(os.sched_getaffinity(0)) > 1 and os.path.exists("/usr/bin/taskset")


def pinned(cmd: list[str]) -> list[str]:
    """``cmd`` on the servers' CPU (``taskset``), whatever this process is pinned to."""
    return ["taskset", "-c", str(SERVER_CPU), *cmd] if PIN else cmd


def pin_self_to_client_cpu() -> None:
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until ``path`` answers below 500 (both servers load the model before they answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"no answer on :{port}{path}")


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, total


def wait_quiet(limit: float, max_wait_s: float = 300.0) -> float:
    """Wait (at most ``max_wait_s``) until the whole machine is busy less than ``limit`` (0-1)
    over 3 s: the machine is shared. Returns the share busy last seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        idle0, total0 = _cpu_times()
        time.sleep(3)
        idle1, total1 = _cpu_times()
        busy = 1 - (idle1 - idle0) / max(total1 - total0, 1)
        if busy < limit or time.monotonic() > deadline:
            return round(busy, 2)


def serve(cmd: list[str], env: dict, log: Path, port: int, ready: str) -> subprocess.Popen:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            pinned(cmd),
            env=env,
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_ready(port, ready, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    from tasks.io.broker import free_port as free

    return free()


# -- the model -------------------------------------------------------------------------------


def train_champion(workdir: Path) -> tuple[str, dict, list[dict], list[Path]]:
    """A tracking URI whose champion is the model trained on the real recordings; the training
    record; realistic feature rows; the recordings."""
    from tasks.settings import Settings
    from tasks.stages.promote import promote
    from tasks.stages.train import train_and_register

    recordings = sorted(SHARED.glob("*.ndjson.gz")) if SHARED.is_dir() else []
    if not recordings:
        from tasks.sim.writer import write_recordings

        write_recordings(workdir / "sim", products=("BTC-USD", "ETH-USD"), seed=3, minutes=120)
        recordings = sorted((workdir / "sim").rglob("*.ndjson*"))
    uri = f"sqlite:///{workdir / 'store' / 'mlflow.db'}"
    settings = Settings(data_dir=workdir / "data", mlflow_tracking_uri=uri)
    record = train_and_register(settings, [str(p) for p in recordings])
    promote(settings, record["version"], force=True, who="bench", why="serving benchmark")
    from tasks.stages.backfill import batch_features

    rows = []
    for row in batch_features(recordings[:2]):
        rows.append({k: (None if v != v else v) for k, v in row.as_dict().items()})
    return uri, record, rows, recordings


def model_cost(uri: str, rows: list[dict]) -> dict:
    """``predict_array`` alone, in this process: one row, and 1,000 rows."""
    from tasks.core.predictions import feature_array
    from tasks.io.model_source import ModelSource
    from tasks.settings import Settings

    source = ModelSource(Settings(mlflow_tracking_uri=uri))
    predictor = source.load().predictor
    one, _ = feature_array(rows[-1:], predictor.feature_names)
    many, _ = feature_array(rows[-1000:], predictor.feature_names)
    out = {"kind": predictor.kind}
    for name, X, repeat in (("one_row_us", one, 2000), ("rows1000_us", many, 50)):
        for _ in range(repeat // 10):
            predictor.predict_array(X)
        started = time.perf_counter()
        for _ in range(repeat):
            predictor.predict_array(X)
        out[name] = round((time.perf_counter() - started) / repeat * 1e6, 1)
    return out


# -- BentoML, setting by setting --------------------------------------------------------------

_VARIANT = """
import gc

import bentoml

from bentos.schema import PredictResponse, Rows
from bentos.service import PredictMiddleware, VolatilityService, score_rows


class Variant(VolatilityService.inner):
    def __init__(self):
        super().__init__()
        if not {freeze}:
            gc.unfreeze()
        if not {thresholds}:
            gc.set_threshold(700, 10, 10)
{sync_predict}

svc = bentoml.service(**{config!r})(Variant)
svc.add_asgi_middleware(PredictMiddleware)
"""
_SYNC_PREDICT = """
    @bentoml.api(route="/predict")
    def predict(self, rows: Rows) -> PredictResponse:
        return score_rows(self.source.current, rows, self.metrics)
"""
_STEPS = (
    ("BentoML defaults (sync API, access log, HTTP metrics, tracing, 60 s timeout)", {}),
    ("+ async API", {"async": True}),
    ("+ access log off", {"logging": {"access": {"enabled": False}}}),
    ("+ HTTP metrics middleware off", {"metrics": {"enabled": False}}),
    ("+ routes excluded from tracing", {"tracing": {"excluded_urls": ["/predict"]}}),
    ("+ timeout 10 s", {"traffic": {"timeout": 10}}),
    ("+ gc.freeze() after loading", {"freeze": True}),
    ("+ gc thresholds (20000, 20, 20) (the shipped service)", {"thresholds": True}),
)


def ablation(
    env: dict, workdir: Path, one_row: bytes, big: bytes, seconds: float, quiet: float
) -> list:
    results = []
    settings: dict = {"async": False, "freeze": False, "thresholds": False}
    config: dict = {"name": "volatility_service", "workers": 1}
    for label, step in _STEPS:
        for key, value in step.items():
            if key in settings:
                settings[key] = value
            else:
                config[key] = value
        module = workdir / f"variant_{len(results)}.py"
        module.write_text(
            _VARIANT.format(
                freeze=settings["freeze"],
                thresholds=settings["thresholds"],
                sync_predict="" if settings["async"] else _SYNC_PREDICT,
                config=config,
            )
        )
        port = free_port()
        cmd = [tool("bentoml"), "serve", f"{module.stem}:svc", "--port", str(port)]
        cmd += ["--working-dir", str(workdir)]
        proc = serve(cmd, env, workdir / f"{module.stem}.log", port, "/readyz")
        try:
            busy = wait_quiet(quiet)
            figures = http_figures(port, one_row, big, seconds)
        finally:
            stop(proc)
        results.append({"setting": label, **figures, "busy": busy})
    return results


# -- end to end --------------------------------------------------------------------------------


def _first_seconds(path: Path, seconds: float, out: Path) -> Path:
    """The envelopes of the first ``seconds`` of a recording, as a recording of its own."""
    from tasks.core.timeutil import parse_ts

    kept, first = [], None
    with gzip.open(path, "rt") as fh:
        for line in fh:
            try:
                ts = parse_ts(json.loads(line)["timestamp"])
            except (ValueError, KeyError):
                continue
            first = ts if first is None else first
            if ts - first > seconds:
                break
            kept.append(line)
    out.write_text("".join(kept))
    return out


class _PredictionReader(threading.Thread):
    """Reads ``ticks.predictions`` as it grows; the wall time each record id was first read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from tasks.io.kafka import poll_batch

        while not self.stop.is_set():
            for msg in poll_batch(self.consumer, 500, 0.05):
                if msg.error() is None:
                    self.seen.setdefault(json.loads(msg.value())["record_id"], time.time())
        self.consumer.close()


def _produced_at(bootstrap: str, topic: str) -> dict[str, float]:
    """record id -> Kafka timestamp (s, set when the record was produced) on ``topic``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    times: dict[str, float] = {}
    idle = time.monotonic()
    while time.monotonic() - idle < 3:
        for msg in consumer.consume(1000, 0.2):
            if msg.error() is None:
                value = json.loads(msg.value())
                record_id = value.get("record_id") or _raw_id(value)
                times.setdefault(record_id, msg.timestamp()[1] / 1000)
                idle = time.monotonic()
    consumer.close()
    return times


def _raw_id(value: dict) -> str:
    from tasks.core.messages import RawTick

    return RawTick.from_record(value).record_id


def _percentiles(ms: np.ndarray) -> dict:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def end_to_end(uri: str, recordings: list[Path], workdir: Path, live_seconds: float) -> dict:
    """Replay at the recording's pace and at full speed through broker, featurizer and scorer.

    Per tick: ``e2e`` = read from ``ticks.predictions`` minus produced onto ``ticks.raw``; the
    hops from the Kafka timestamps: featurizer (raw -> features produced), scorer (features ->
    prediction produced), and the prediction's way to a reader."""
    import signal

    from tasks.io.broker import start_broker, stop_broker
    from tasks.io.kafka import ensure_topics
    from tasks.services.scorer import scorer_topics
    from tasks.settings import Settings

    port = free_port()
    broker = start_broker("127.0.0.1", port, log_path=workdir / "broker.log")
    if PIN:
        os.sched_setaffinity(broker.pid, {SERVER_CPU})
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        raw_topic=f"bench.raw.{suffix}",
        features_topic=f"bench.features.{suffix}",
        predictions_topic=f"bench.predictions.{suffix}",
        dlq_topic=f"bench.dlq.{suffix}",
        features_dlq_topic=f"bench.features.dlq.{suffix}",
    )
    ensure_topics(settings)
    ensure_topics(settings, scorer_topics(settings))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MLFLOW_TRACKING_URI": uri,
        "CRYPTOVOL_DATA_DIR": str(workdir / "data"),
        "CRYPTOVOL_RAW_TOPIC": settings.raw_topic,
        "CRYPTOVOL_FEATURES_TOPIC": settings.features_topic,
        "CRYPTOVOL_PREDICTIONS_TOPIC": settings.predictions_topic,
        "CRYPTOVOL_DLQ_TOPIC": settings.dlq_topic,
        "CRYPTOVOL_FEATURES_DLQ_TOPIC": settings.features_dlq_topic,
    }
    stream = []
    with (workdir / "stream.log").open("ab") as log:
        for command in ("featurize", "score"):
            stream.append(
                subprocess.Popen(
                    pinned([tool("cryptovol"), command, "--metrics-port", "0"]),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    reader = _PredictionReader(settings.kafka_bootstrap_servers, settings.predictions_topic)
    reader.start()
    results = {}
    try:
        runs = [
            ("warmup", [_first_seconds(recordings[0], 20, workdir / "warmup.ndjson")], "max"),
            ("live", [_first_seconds(recordings[1], live_seconds, workdir / "live.ndjson")], "1"),
            ("max_speed", recordings[2:6], "max"),
        ]
        for name, files, speed in runs:
            started, before = time.time(), len(reader.seen)
            replay = subprocess.run(
                [tool("cryptovol"), "replay", *map(str, files), "--speed", speed],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            ticks = json.loads(replay.stdout)["tickers"]
            deadline = time.monotonic() + 120
            while len(reader.seen) - before < ticks and time.monotonic() < deadline:
                time.sleep(0.1)  # until every tick's prediction is in
            if name == "warmup":  # groups joined, model loaded: the pipeline is hot
                continue
            raw = _produced_at(settings.kafka_bootstrap_servers, settings.raw_topic)
            features = _produced_at(settings.kafka_bootstrap_servers, settings.features_topic)
            predicted = _produced_at(settings.kafka_bootstrap_servers, settings.predictions_topic)
            ids = [i for i, t in raw.items() if t >= started and i in reader.seen]
            e2e = np.array([(reader.seen[i] - raw[i]) * 1000 for i in ids])
            hops = {
                "featurizer": [(features[i] - raw[i]) * 1000 for i in ids],
                "scorer": [(predicted[i] - features[i]) * 1000 for i in ids],
                "to_reader": [(reader.seen[i] - predicted[i]) * 1000 for i in ids],
            }
            # The run's first tick waits for the new replay process's producer to connect
            # (a live capture's producer is connected already): reported apart.
            first = min(range(len(ids)), key=lambda k: raw[ids[k]])
            rest = np.delete(e2e, first)
            results[name] = {
                "ticks": ticks,
                "predicted": len(ids),
                **_percentiles(rest),
                "first_tick_ms": round(float(e2e[first]), 1),
                "ticks_per_s": round(len(ids) / (max(reader.seen[i] for i in ids) - started), 1),
                "hops_p50_ms": {k: round(float(np.median(v)), 1) for k, v in hops.items()},
                "hops_p99_ms": {k: round(float(np.percentile(v, 99)), 1) for k, v in hops.items()},
            }
    finally:
        reader.stop.set()
        reader.join()
        for proc in stream:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in stream:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        stop_broker(broker)
    return results


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed load")
    parser.add_argument("--live-seconds", type=float, default=60.0, help="live-pace replay")
    parser.add_argument("--ablation", action="store_true", help="BentoML setting by setting")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="before each HTTP measurement, wait (up to 5 min) until the machine is busy less "
        "than this share over 3 s (default %(default)s; 1 disables)",
    )
    parser.add_argument("--skip-e2e", action="store_true", help="no end-to-end stream run")
    parser.add_argument("--skip-http", action="store_true", help="no HTTP benchmark")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        uri, record, rows, recordings = train_champion(workdir)
        pin_self_to_client_cpu()
        out["pinning"] = (
            f"servers on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU} (taskset)"
            if PIN
            else "none (one CPU)"
        )
        out["model"] = {
            "version": record["version"],
            "trained_on": f"{len(recordings)} recordings",
            **model_cost(uri, rows),
        }
        full = next(r for r in reversed(rows) if all(v is not None for v in r.values()))
        one_row = json.dumps({"rows": [full]}).encode()
        big = json.dumps({"rows": rows[-1000:]}).encode()
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "BENTOML_HOME": str(workdir / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "CRYPTOVOL_DATA_DIR": str(workdir / "data"),
        }
        servers = {
            "bentoml": ([tool("bentoml"), "serve", "bentos.service:VolatilityService"], "/health"),
            "fastapi": ([tool("uvicorn"), "benchmarks.fastapi_app:app", "--no-access-log"], "/"),
        }
        http: dict = {}
        for name, (cmd, ready) in ({} if args.skip_http else servers).items():
            port = free_port()
            cmd = [*cmd, "--host", "127.0.0.1", "--port", str(port)]
            proc = serve(cmd, env, workdir / f"{name}.log", port, ready)
            try:
                busy = wait_quiet(args.quiet)
                http[name] = {**http_figures(port, one_row, big, args.seconds), "busy": busy}
            finally:
                stop(proc)
        if http:
            http["bentoml_over_fastapi_c32"] = round(
                http["bentoml"]["c32"]["requests_per_s"] / http["fastapi"]["c32"]["requests_per_s"],
                2,
            )
            out["http"] = http
        if args.ablation:
            out["ablation"] = ablation(env, workdir, one_row, big, args.seconds, args.quiet)
        if not args.skip_e2e:
            out["e2e"] = end_to_end(uri, recordings, workdir, args.live_seconds)
    out["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
