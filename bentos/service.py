"""The BentoML service: the registered champion behind ``POST /predict``.

Start it from the repository root::

    uv run bentoml serve bentos.service:VolatilityService        # 127.0.0.1:3000

Routes: ``POST /predict`` (the contract is in :mod:`bentos.schema`), ``GET /health``,
``GET /version``, ``GET /features``, ``GET /metrics``. ``MODEL_VARIANT=baseline`` serves the
registered z-score baseline instead. The model comes from
:class:`tasks.io.model_source.ModelSource`: resolved from ``models:/volatility-spike@champion``
at start (no champion: the server stops with a message saying how to make one), then the alias
is watched every ``CRYPTOVOL_MODEL_POLL_S`` seconds and a moved alias swaps the model without a
restart or a failed request.

The request path is the pure predictor on a small float array (``SpikePredictor.predict_array``),
never MLflow's pyfunc with its DataFrame schema enforcement. BentoML's configuration is all here
(``api_server.*`` keys in a config file would be ignored); docs/serving.md gives what each setting
bought, measured with the real model:

- an ``async`` API: scoring a few rows takes microseconds, cheaper on the event loop than a
  thread hop;
- no access log, no BentoML HTTP metrics middleware (our own metrics below replace it), and our
  routes excluded from OpenTelemetry (nothing exports traces here);
- a 10 s request timeout instead of 60 s: BentoML's timeout middleware keeps a timer alive per
  request for the whole timeout, and at thousands of requests per second those timers fill the heap;
- ``gc.freeze()`` after the model is loaded, so full collections skip the long-lived objects,
  and higher collection thresholds, so the young generations are collected less often.

Metrics (``GET /metrics``): ``cryptovol_service_requests_total{route,status}``,
``cryptovol_service_request_seconds{route}``, ``cryptovol_service_predictions_total`` and
``cryptovol_service_spikes_total{variant,version}``, ``cryptovol_service_score{variant}``, and the
model source's (loaded and alias versions, registry up, check age, reloads and failures), after
the process metrics of the default registry.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import UnprocessableEntity
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError

from bentos.schema import MAX_ROWS, PredictResponse, Rows
from tasks.core.feature_catalog import catalog
from tasks.core.gc_tuning import tune_gc_for_a_long_running_process
from tasks.core.models import SpikePredictor
from tasks.core.predictions import SCORE_BUCKETS, bucket_counts, feature_array
from tasks.io.model_source import (
    ModelSource,
    ModelSourceMetrics,
    ServedModel,
    fail_fast_registry,
)
from tasks.io.registry import RegistryError, git_sha
from tasks.settings import get_settings

log = logging.getLogger("cryptovol.service")

PREFIX = "cryptovol_service"
PREDICT_ROUTE = "/predict"
ROUTES = (PREDICT_ROUTE, "/health", "/version", "/features", "/metrics")
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"  # where BentoML logs failed requests
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """The service's own metrics, on a registry of their own (served by ``GET /metrics``)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Requests to /predict by HTTP status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_seconds",
            "Server-side handling time",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            f"{PREFIX}_predictions", "Rows scored", ["variant", "version"], registry=r
        )
        self.spikes = Counter(
            f"{PREFIX}_spikes", "Rows flagged as spikes", ["variant", "version"], registry=r
        )
        self.score = Histogram(
            f"{PREFIX}_score",
            "Spike probabilities served",
            ["variant"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )

    def observe_scores(self, variant: str, scores: np.ndarray) -> None:
        """Many ``observe`` calls at once: one numpy pass, then one increment per bucket (a
        1,000-row request would otherwise pay 1,000 observes). It adds to the histogram's own
        bucket values, which prometheus_client keeps private: the unit tests check the result
        equals observing each score."""
        child = self.score.labels(variant)
        if len(scores) == 1:
            child.observe(float(scores[0]))
            return
        for bucket, count in zip(child._buckets, bucket_counts(scores), strict=True):
            if count:
                bucket.inc(count)
        child._sum.inc(float(np.nansum(scores)))


@lru_cache(maxsize=1)
def service_metrics() -> ServiceMetrics:
    """One set per worker process, shared by the middleware and the service instance."""
    return ServiceMetrics()


_PLAIN_WORDS = {
    "extra_forbidden": "unknown feature name (GET /features lists them)",
    "float_type": "not a number",
    "finite_number": "not a finite number",
}


class UnscorableRows(UnprocessableEntity):
    """Finite inputs the model gives no finite score for (an overflow inside it): a 422 naming
    the rows and fields, never a 200 with a null score."""


MAX_NAMED_ROWS = 10  # an unscorable batch names this many rows, then counts the rest


def culprit_fields(predictor: SpikePredictor, row: np.ndarray) -> list[int]:
    """Columns of one unscorable row whose value alone (left out, the rest kept) makes the score
    non-finite; all present columns when no single one does (they overflow together)."""
    present = [j for j in range(len(row)) if not np.isnan(row[j])]
    trials = np.repeat(row[None, :], len(present), axis=0)
    for k, j in enumerate(present):
        trials[k, j] = np.nan
    fixed = np.isfinite(predictor.predict_array(trials)) if present else np.array([], bool)
    return [j for j, ok in zip(present, fixed, strict=True) if ok] or present


def unscorable_message(predictor: SpikePredictor, X: np.ndarray, bad: np.ndarray) -> str:
    names = predictor.feature_names
    parts = []
    for i in bad[:MAX_NAMED_ROWS]:
        fields = ", ".join(f"{names[j]}={X[i, j]:g}" for j in culprit_fields(predictor, X[i]))
        parts.append(f"rows[{i}]: {fields}")
    more = f" (and {len(bad) - MAX_NAMED_ROWS} more rows)" if len(bad) > MAX_NAMED_ROWS else ""
    return (
        "the model gives no finite score for these values: "
        + "; ".join(parts)
        + more
        + ". Send values in each feature's range (GET /features gives meanings and units)"
    )


def score_rows(model: ServedModel, rows: list[dict], metrics: ServiceMetrics) -> PredictResponse:
    """The work of ``POST /predict`` on validated rows: one model, read once, for every row."""
    predictor = model.predictor
    X, missing = feature_array(rows, predictor.feature_names)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
        scores = predictor.predict_array(X)
        bad = np.flatnonzero(~np.isfinite(scores))
        if len(bad):
            raise UnscorableRows(unscorable_message(predictor, X, bad))
    spikes = scores >= predictor.threshold
    metrics.predictions.labels(model.variant, model.version).inc(len(scores))
    # inc(0) too: the series exists from the first request, so a rate of zero spikes reads 0
    metrics.spikes.labels(model.variant, model.version).inc(int(spikes.sum()))
    metrics.observe_scores(model.variant, scores)
    return PredictResponse(
        scores=scores.tolist(),
        spikes=spikes.tolist(),
        threshold=float(predictor.threshold),
        model_variant=model.variant,
        version=model.version,
        ts=datetime.now(UTC).isoformat(),
        missing=missing,
    )


def readable_error(detail: list[dict]) -> str:
    """``rows[3].ret_std: not a finite number; ...`` from pydantic's error list."""
    parts = []
    for error in detail:
        where = ""
        for part in error.get("loc", ()):
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        message = _PLAIN_WORDS.get(error.get("type", ""), error.get("msg", "invalid"))
        parts.append(f"{where or 'body'}: {message}")
    return "; ".join(parts)


class PredictMiddleware:
    """Around ``/predict``: counts every request by status and times it, validation failures
    included (BentoML answers those before the API method runs), and makes a 400's ``error``
    name the rows and fields at fault instead of only counting them (and a 422's an object, not
    BentoML's one-element list)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.metrics = service_metrics()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_ROUTE:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        held: dict | None = None  # a 400's start message, sent once its body is rewritten
        body = b""

        async def relay(message: dict) -> None:
            nonlocal status, held, body
            if message["type"] == "http.response.start":
                status = message["status"]
                if status in REWRITTEN:
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                body += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = REWRITTEN[status](body)
                headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**held, "headers": headers})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        try:
            await self.app(scope, receive, relay)
        finally:
            self.metrics.request_seconds.labels(PREDICT_ROUTE).observe(
                time.perf_counter() - started
            )
            self.metrics.requests.labels(PREDICT_ROUTE, str(status)).inc()


def _rewrite_400(body: bytes) -> bytes:
    """BentoML's 400 (``error``: a count, ``detail``: pydantic's list, which its own OpenAPI
    document says is a string) as ``error``: the readable message, ``errors``: the list."""
    try:
        detail = json.loads(body)["detail"]
        errors = [{k: e[k] for k in ("loc", "type", "msg") if k in e} for e in detail]
        payload = {"error": readable_error(detail), "errors": errors}
    except (ValueError, KeyError, TypeError):  # not pydantic's shape: leave it as it is
        return body
    return json.dumps(payload).encode()


def _rewrite_422(body: bytes) -> bytes:
    """BentoML's ``[{"error": ...}]`` as ``{"error": ...}``, the shape of every other refusal."""
    try:
        (payload,) = json.loads(body)
        return json.dumps({"error": payload["error"]}).encode()
    except (ValueError, KeyError, TypeError):
        return body


REWRITTEN = {400: _rewrite_400, 422: _rewrite_422}


class QuietValidationErrors(logging.Filter):
    """BentoML logs a rejected request (a 400, a 422) as an ERROR with a traceback; one line
    will do."""

    def filter(self, record: logging.LogRecord) -> bool:
        refused = record.exc_info[1] if record.exc_info else None
        if isinstance(refused, ValidationError | UnscorableRows):
            why = (
                readable_error(refused.errors(include_url=False))
                if isinstance(refused, ValidationError)
                else str(refused)
            )
            record.msg, record.args = (
                "rejected %s: %s",
                (record.args[0] if record.args else PREDICT_ROUTE, why),
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


def stop_server() -> None:
    """End ``bentoml serve`` itself, not only this worker: its supervisor would restart a worker
    that cannot start forever. Outside a ``bentoml serve`` worker (tests, an ASGI host) it does
    nothing and the caller's exception is the answer."""
    if bentoml.server_context.worker_index is not None:
        os.kill(os.getppid(), signal.SIGTERM)


http_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(http_app, path="/")
@bentoml.service(
    name="volatility_service",
    workers=1,
    http={"host": "127.0.0.1", "port": 3000},
    traffic={"timeout": 10},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
    tracing={"excluded_urls": list(ROUTES)},
)
class VolatilityService:
    """Serves the registered champion (or the baseline with ``MODEL_VARIANT=baseline``)."""

    def __init__(self) -> None:
        settings = get_settings()
        fail_fast_registry()  # this worker serves: a dead registry must show within a poll
        self.metrics = service_metrics()
        self.source = ModelSource(
            settings,
            metrics=ModelSourceMetrics(PREFIX, settings.model_variant, self.metrics.registry),
        )
        try:
            self.source.load()
        except RegistryError as exc:  # no champion, no registry, a broken model: nothing to serve
            log.error("cannot start: %s", exc)
            stop_server()
            raise
        self.source.start()
        logging.getLogger(BENTOML_HTTP_LOGGER).addFilter(QuietValidationErrors())
        self.code_sha = git_sha()
        self.started_at = time.time()
        tune_gc_for_a_long_running_process()

    @bentoml.on_shutdown
    def stop_watching(self) -> None:
        self.source.stop()

    @bentoml.api(route=PREDICT_ROUTE)
    async def predict(self, rows: Rows) -> PredictResponse:
        """Spike probabilities of feature rows; missing features are NaN for the model."""
        return score_rows(self.source.current, rows, self.metrics)

    @http_app.get("/health")
    def health(self) -> JSONResponse:
        """Model loaded and its version, registry reachable, seconds since the last check;
        ``degraded`` (with the reason) while the registry cannot be read, the version the alias
        names cannot be loaded (the loaded model is still served), or the persistence fall-back
        is served."""
        state = self.source.health()
        status, reason = "healthy", None
        if not state["model_loaded"]:
            status = "unavailable"
        elif state["unloadable_version"] is not None:
            status = "degraded"
            reason = (
                f"the {state['alias']} is version {state['unloadable_version']}, which cannot be "
                f"loaded ({state['unloadable_reason']}); still serving version {state['version']}"
            )
        elif not state["registry_reachable"]:
            status = "degraded"
            reason = f"the registry cannot be read; still serving version {state['version']}"
        elif state["fallback"]:
            status = "degraded"
            fallback = state["fallback"]
            reason = (
                f"serving the persistence fall-back (version {state['version']}) since "
                f"{fallback['since']} instead of version {fallback['from_version']}: "
                f"{fallback['reason']}"
            )
        body = {
            "status": status,
            "reason": reason,
            "timestamp": datetime.now(UTC).isoformat(),
            **state,
        }
        return JSONResponse(body, status_code=200 if state["model_loaded"] else 503)

    @http_app.get("/version")
    def version(self) -> dict:
        """The model served (name, version, run, kind, label, threshold), the code's git SHA
        (``unknown`` outside a checkout) and the bento's tag when serving a built bento."""
        context = bentoml.server_context
        built = context.bento_version not in (None, "not available")
        return {
            **self.source.current.describe(),
            "sha": self.code_sha,
            "bento": f"{context.bento_name}:{context.bento_version}" if built else None,
        }

    @http_app.get("/features")
    def features(self) -> dict:
        """The model's feature names in order, each with its meaning and unit."""
        predictor = self.source.current.predictor
        return {
            "feature_set_version": predictor.feature_set_version,
            "max_rows": MAX_ROWS,
            "features": catalog(predictor.feature_names),
        }

    @http_app.get("/metrics")
    def prometheus(self) -> Response:
        """Prometheus text: the default registry (process) and the service's own metrics."""
        self.source.refresh_metrics()
        body = generate_latest(REGISTRY) + generate_latest(self.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


VolatilityService.add_asgi_middleware(PredictMiddleware)
