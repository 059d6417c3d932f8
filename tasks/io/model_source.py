"""The served model: a registry alias resolved to a version, loaded once, watched, swapped.

Shared by the HTTP service (``bentos/service.py``) and the stream scorer
(``tasks/services/scorer.py``), so both serve the same way:

- At start, ``models:/<name>@champion`` (``MODEL_VARIANT`` picks the ML model or the z-score
  baseline) is resolved to a version and that version is loaded with
  :func:`tasks.io.model_store.load_predictor`. No alias: :class:`NoChampion`, whose message says
  how to train and promote one. A tracking server that does not answer: :class:`RegistryUnavailable`
  (never read as "no champion").
- A thread then looks at the alias every ``model_poll_s`` seconds. When it points to another
  version, that version is loaded beside the current one and swapped in by one reference
  assignment. Callers read :attr:`ModelSource.current` once per request or batch and use that
  :class:`ServedModel` throughout, so no answer mixes two models and the hot path takes no lock.
- A registry that stops answering later changes nothing served: the loaded model stays, the
  failure is counted, and :meth:`ModelSource.health` and the metrics say so. A version that fails
  to load (a broken artifact, a threshold that is not a probability) is counted and retried at
  the next look; the current model stays, and :meth:`ModelSource.health` names the version it
  cannot load and why until the alias points at a loadable one.

Metrics (prefix ``cryptovol_service`` or ``cryptovol_scorer``, label ``variant``):
``_model_version``, ``_alias_version`` (0 when the alias points nowhere), ``_registry_up``,
``_registry_check_age_seconds`` (set by :meth:`ModelSource.refresh_metrics`, at scrape),
``_serving_fallback`` and ``_fallback_since_timestamp_seconds`` (the persistence fall-back),
``_model_reloads_total``, ``_model_reload_failures_total``, and
``_registry_check_failures_total`` (looks at the registry that found it unreachable).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from prometheus_client import CollectorRegistry, Counter, Gauge

from tasks.core.features import FEATURE_SET_VERSION
from tasks.core.models import SpikePredictor
from tasks.core.predictions import ModelStamp
from tasks.io.model_store import load_predictor
from tasks.io.registry import (
    CHAMPION,
    RegistryError,
    RegistryUnavailable,
    connect,
    model_name,
    unreachable_message,
)
from tasks.settings import Settings

log = logging.getLogger("cryptovol.model_source")

# MLflow error codes that mean "no such model or alias"; any other failure is an unreachable store.
_MISSING_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def fail_fast_registry() -> None:
    """Make this process's MLflow calls fail within seconds instead of retrying for minutes, so
    a dead tracking server shows at the next look. For a serving process only (the service's
    worker, ``cryptovol score``): it sets process-wide MLflow variables, unless already set."""
    for key, value in FAIL_FAST_ENV.items():
        os.environ.setdefault(key, value)


class NoChampion(RegistryError):
    """The alias to serve does not exist (yet): there is nothing to serve."""


class ModelLoadError(RegistryError):
    """The version the alias points to could not be loaded."""


def no_champion_message(uri: str) -> str:
    return (
        f"{uri} does not exist, so there is no model to serve. Train and promote one first: "
        "`uv run cryptovol train --data RECORDINGS_OR_FEATURES` registers a challenger, "
        "`uv run cryptovol promote --data RECENT_DATA` validates and promotes it "
        "(or `uv run cryptovol promote --force`); `uv run cryptovol quickstart` does both on "
        "simulated data."
    )


@dataclass(frozen=True)
class AliasTarget:
    """Where the alias points: a version and what the registry knows about it."""

    version: str
    run_id: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class ServedModel:
    """A loaded model version and where it came from."""

    predictor: SpikePredictor
    name: str
    version: str
    variant: str
    alias: str
    run_id: str
    tags: Mapping[str, str]
    loaded_at: float  # epoch seconds
    stamp: ModelStamp = field(init=False)

    def __post_init__(self) -> None:
        stamp = ModelStamp(self.name, self.version, self.variant, float(self.predictor.threshold))
        object.__setattr__(self, "stamp", stamp)

    @property
    def fallback(self) -> dict[str, str] | None:
        """Since when, why and instead of which version this is the persistence fall-back the
        monitor serves when the champion ranked below persistence (None: not a fall-back)."""
        if self.tags.get("fallback") != "true":
            return None
        return {
            "since": self.tags.get("fallback.since", ""),
            "reason": self.tags.get("fallback.reason", ""),
            "from_version": self.tags.get("fallback.from_version", ""),
        }

    def describe(self) -> dict[str, Any]:
        """What ``GET /version`` shows about the model."""
        p = self.predictor
        return {
            "fallback": self.fallback,
            "model": self.name,
            "version": self.version,
            "model_variant": self.variant,
            "alias": self.alias,
            "run_id": self.run_id,
            "model_kind": p.kind,
            "feature_set_version": p.feature_set_version,
            "label": dict(p.label),
            "threshold": float(p.threshold),
            "model_git_sha": self.tags.get("git_sha"),
            "loaded_at": datetime.fromtimestamp(self.loaded_at, UTC).isoformat(),
        }


class ModelSourceMetrics:
    """The model source's Prometheus metrics, under ``prefix``, for one variant.

    Gauges keep the most recent value when BentoML collects metrics across processes.
    """

    def __init__(
        self, prefix: str, variant: str, registry: CollectorRegistry | None = None
    ) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r

        def gauge(name: str, doc: str) -> Gauge:
            metric = Gauge(
                f"{prefix}_{name}", doc, ["variant"], registry=r, multiprocess_mode="mostrecent"
            )
            return metric.labels(variant)

        def counter(name: str, doc: str):
            return Counter(f"{prefix}_{name}", doc, ["variant"], registry=r).labels(variant)

        self.model_version = gauge("model_version", "Model version currently loaded")
        self.serving_fallback = gauge(
            "serving_fallback", "1 while the model served is the persistence fall-back"
        )
        self.fallback_since = gauge(
            "fallback_since_timestamp_seconds",
            "When the persistence fall-back served now was made champion (0: none)",
        )
        self.alias_version = gauge(
            "alias_version",
            "Version the alias pointed to at the last successful registry check (0: none)",
        )
        self.registry_up = gauge("registry_up", "1 if the last registry check succeeded")
        self.check_age = gauge(
            "registry_check_age_seconds", "Seconds since the last successful registry check"
        )
        self.reloads = counter("model_reloads", "Model swaps after the alias moved")
        self.reload_failures = counter(
            "model_reload_failures", "Versions the alias pointed to that failed to load"
        )
        self.check_failures = counter(
            "registry_check_failures", "Registry checks that found the registry unreachable"
        )


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def _version_number(version: str | None) -> float:
    try:
        return float(version) if version is not None else 0.0
    except ValueError:
        return 0.0


class ModelSource:
    """Resolves, loads, watches and swaps the model behind ``models:/<name>@<alias>``."""

    def __init__(
        self,
        settings: Settings,
        *,
        variant: str | None = None,
        alias: str = CHAMPION,
        poll_s: float | None = None,
        metrics: ModelSourceMetrics | None = None,
        loader: Callable[[str], SpikePredictor] = load_predictor,
    ) -> None:
        self.settings = settings
        self.variant = variant or settings.model_variant
        self.alias = alias
        self.name = model_name(settings, self.variant)
        self.uri = f"models:/{self.name}@{alias}"
        self.poll_s = settings.model_poll_s if poll_s is None else poll_s
        self.metrics = metrics or ModelSourceMetrics("cryptovol_model_source", self.variant)
        self._loader = loader
        self._client = None
        self._current: ServedModel | None = None
        self._alias_version: str | None = None
        self._last_ok: float | None = None  # monotonic time of the last successful check
        self._last_error: str | None = None
        self._unloadable: tuple[str, str] | None = None  # (version, why) the alias names
        self._registry_up = False
        self._reloads = 0
        self._reload_failures = 0
        self._check_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the hot path ------------------------------------------------------------------------

    @property
    def current(self) -> ServedModel:
        """The model to use now; read it once per request or batch."""
        model = self._current
        if model is None:
            raise RuntimeError("no model loaded: call ModelSource.load() first")
        return model

    # -- registry ----------------------------------------------------------------------------

    def _resolve(self) -> AliasTarget | None:
        """Where the alias points now; None when it (or the model) does not exist."""
        if self._client is None:
            self._client = connect(self.settings)
        try:
            found = self._client.get_model_version_by_alias(self.name, self.alias)
        except MlflowException as exc:
            if exc.error_code in _MISSING_CODES:
                return None
            raise RegistryUnavailable(
                f"{unreachable_message(self.settings.tracking_uri)}: {exc.message}"
            ) from exc
        except OSError as exc:  # a local store that cannot be read
            raise RegistryUnavailable(
                f"cannot read the MLflow registry at {self.settings.tracking_uri}: {exc}"
            ) from exc
        return AliasTarget(str(found.version), found.run_id or "", dict(found.tags or {}))

    def _load_version(self, target: AliasTarget) -> ServedModel:
        predictor = self._loader(f"models:/{self.name}/{target.version}")
        if predictor.feature_set_version != FEATURE_SET_VERSION:
            log.warning(
                "%s version %s expects feature set %s; the feature engine makes %s",
                self.name,
                target.version,
                predictor.feature_set_version,
                FEATURE_SET_VERSION,
            )
        return ServedModel(
            predictor=predictor,
            name=self.name,
            version=target.version,
            variant=self.variant,
            alias=self.alias,
            run_id=target.run_id,
            tags=target.tags,
            loaded_at=time.time(),
        )

    def _checked(self, target: AliasTarget | None) -> None:
        self._last_ok = time.monotonic()
        self._last_error = None
        self._registry_up = True
        self._alias_version = target.version if target else None
        self.metrics.registry_up.set(1)
        self.metrics.alias_version.set(_version_number(self._alias_version))
        self.metrics.check_age.set(0)

    def _unreachable(self, exc: Exception) -> None:
        if self._registry_up or self._last_error is None:
            log.warning("registry check failed; serving the loaded model: %s", exc)
        self._last_error = str(exc)
        self._registry_up = False
        self._check_failures += 1
        self.metrics.registry_up.set(0)
        self.metrics.check_failures.inc()

    def _swap(self, model: ServedModel) -> None:
        self._current = model
        self._unloadable = None
        self.metrics.model_version.set(_version_number(model.version))
        fallback = model.fallback
        self.metrics.serving_fallback.set(1 if fallback else 0)
        self.metrics.fallback_since.set(_epoch(fallback["since"]) if fallback else 0)

    def load(self) -> ServedModel:
        """Resolve the alias and load its version; the first thing a server does.

        Raises :class:`NoChampion` (with how to make one), :class:`RegistryUnavailable` or
        :class:`ModelLoadError`.
        """
        try:
            target = self._resolve()
        except RegistryUnavailable as exc:
            self._unreachable(exc)
            raise
        self._checked(target)
        if target is None:
            raise NoChampion(no_champion_message(self.uri))
        try:
            model = self._load_version(target)
        except Exception as exc:
            raise ModelLoadError(
                f"{self.name} version {target.version} (the {self.alias}) could not be loaded: "
                f"{exc!r}"
            ) from exc
        self._swap(model)
        log.info("serving %s version %s (%s)", self.name, model.version, model.predictor.kind)
        return model

    def check(self) -> ServedModel | None:
        """One look at the registry: swap to the version the alias points to if it moved.

        Never raises: failures are recorded, counted and logged; the current model stays.
        """
        try:
            target = self._resolve()
        except RegistryUnavailable as exc:
            self._unreachable(exc)
            return self._current
        self._checked(target)
        current = self._current
        if target is None:
            if current is not None:
                log.warning(
                    "%s points nowhere; still serving version %s", self.uri, current.version
                )
            return current
        if current is not None and target.version == current.version:
            self._unloadable = None
            return current
        try:
            model = self._load_version(target)
        except Exception as exc:  # a broken artifact must not stop serving the current model
            self._reload_failures += 1
            self.metrics.reload_failures.inc()
            why = str(exc) or repr(exc)
            self._last_error = f"loading version {target.version} failed: {why}"
            if self._unloadable is None or self._unloadable[0] != target.version:
                log.exception(
                    "loading %s version %s failed; keeping the current model",
                    self.name,
                    target.version,
                )
            self._unloadable = (target.version, why)
            return current
        self._swap(model)
        self._reloads += 1
        self.metrics.reloads.inc()
        log.info(
            "%s moved: now serving version %s (was %s)",
            self.uri,
            model.version,
            current.version if current else None,
        )
        return model

    # -- watching ----------------------------------------------------------------------------

    def start(self) -> None:
        """Look at the alias every ``poll_s`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="model-source", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("registry check crashed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 10)
            self._thread = None

    # -- reporting ---------------------------------------------------------------------------

    def seconds_since_check(self) -> float | None:
        """Seconds since the last successful registry check (None: never)."""
        return None if self._last_ok is None else time.monotonic() - self._last_ok

    def refresh_metrics(self) -> None:
        """Bring the time-dependent gauge up to date (call it before metrics are read)."""
        age = self.seconds_since_check()
        if age is not None:
            self.metrics.check_age.set(age)

    def health(self) -> dict[str, Any]:
        model = self._current
        age = self.seconds_since_check()
        return {
            "model_loaded": model is not None,
            "model": self.name,
            "model_variant": self.variant,
            "version": model.version if model else None,
            "fallback": model.fallback if model else None,
            "alias": self.alias,
            "alias_version": self._alias_version,
            "registry_reachable": self._registry_up,
            "seconds_since_registry_check": None if age is None else round(age, 3),
            "registry_poll_s": self.poll_s,
            "reloads": self._reloads,
            "reload_failures": self._reload_failures,
            "registry_check_failures": self._check_failures,
            "last_error": self._last_error,
            "unloadable_version": self._unloadable[0] if self._unloadable else None,
            "unloadable_reason": self._unloadable[1] if self._unloadable else None,
        }
