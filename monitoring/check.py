"""One drift check, the stage behind ``cryptovol drift`` and the ``monitor`` flow.

1. The judged model (the champion unless told otherwise) and its reference: the training sample
   stored with its run, or a data set given instead.
2. The current rows: a backfilled data set or recordings, or the latest ``minutes`` of
   ``ticks.features`` put on the label grid.
3. Both scored by the judged model (prediction drift), then the Evidently report and its figures.
4. Live model quality: the served predictions judged against what happened since.
5. The figures pushed to the Pushgateway; retraining and the fall-back to persistence decided on
   (:mod:`monitoring.policy`); when the champion stayed below persistence, a persistence version
   fit on the last hour's labelled predictions is registered and made champion
   (:func:`tasks.stages.promote.fall_back_to_persistence`); when due and allowed, retraining is
   started (:mod:`monitoring.retrain`).
6. The report written to the report folder with the check's summary on top, the history and the
   index updated, the check logged to MLflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from monitoring import drift, export, pages, policy, report_store, tracking
from monitoring.live import labelled_stream
from tasks.core.evaluation import epoch_seconds
from tasks.core.features import FEATURE_NAMES
from tasks.core.live_quality import WINDOWS_S, fit_fallback, on_label_grid, windowed_quality
from tasks.io import model_store, reference, registry, streams
from tasks.io.dask_cluster import RunAll, run_in_process
from tasks.io.kafka import BrokerUnavailable
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.stages.data import LoadInfo

log = logging.getLogger("cryptovol.monitor")

CURRENT_ROWS = 50_000  # a larger current window is sampled (seeded) for the report


class NoCurrentData(LookupError):
    """Nothing to judge: the window or data set holds no feature rows."""


@dataclass
class CheckResult:
    entry: dict  # the history entry (figures, spans, decision)
    report: Path
    index: Path
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            **self.entry,
            "report_path": str(self.report),
            "index": str(self.index),
            "timings": self.timings,
        }


def _span(frame: pd.DataFrame, source: str) -> dict:
    if frame.empty:
        return {"source": source, "rows": 0, "start": None, "end": None}
    ts = pd.to_datetime(frame["ts"], utc=True)
    return {
        "source": source,
        "rows": len(frame),
        "start": ts.min().isoformat(),
        "end": ts.max().isoformat(),
    }


def _load_data(
    settings: Settings, paths: list[str], run_all: RunAll, sample_rows: int | None = None
) -> tuple[pd.DataFrame, LoadInfo]:
    from tasks.stages.data import load_frame

    return load_frame(paths, settings.backfill_cache_dir, sample_rows=sample_rows, run_all=run_all)


def current_from_stream(settings: Settings, minutes: float, now: float) -> pd.DataFrame:
    """The last ``minutes`` of event time of what ``ticks.features`` received in the last
    ``minutes`` of wall clock, one row per product and grid second."""
    values = streams.iter_window(settings, settings.features_topic, now - minutes * 60)
    records, malformed = streams.feature_records(values)
    if malformed:
        log.warning("%d malformed records on %s skipped", malformed, settings.features_topic)
    if records.empty:
        return records
    newest = records["ts"].max()
    recent = records[records["ts"] >= newest - pd.Timedelta(minutes=minutes)]
    return on_label_grid(recent)


def _sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    from tasks.stages.data import sample_positions

    picked = sample_positions(len(frame), rows)
    return frame if picked is None else frame.iloc[picked].reset_index(drop=True)


def _push(settings: Settings, entry: dict, history: list[dict]) -> bool:
    """Push the check's figures; a Pushgateway that does not answer is noted, not fatal."""
    if not settings.pushgateway_url:
        return False
    retrains = [e["time"] for e in [*history, entry] if (e.get("retrain") or {}).get("triggered")]
    registry_ = export.monitor_metrics(
        entry, retrains=len(retrains), last_retrain=retrains[-1] if retrains else None
    )
    try:
        export.push(settings.pushgateway_url, registry_)
    except OSError as exc:
        log.warning("figures not pushed to %s: %s", settings.pushgateway_url, exc)
        entry["notes"].append(f"figures not pushed: {exc}")
        return False
    return True


def _judged(settings: Settings, model: reference.ModelRef) -> dict:
    tags = registry.version_tags(registry.connect(settings), model.name, model.version)
    return {
        "name": model.name,
        "version": model.version,
        "run_id": model.run_id,
        "kind": tags.get("model_kind"),
        "fallback": tags.get("fallback") == "true",
    }


def _serving_fallback(settings: Settings) -> dict | None:
    from tasks.stages.promote import fallback_state

    return fallback_state(registry.connect(settings), registry.model_name(settings))


def _fall_back(
    settings: Settings, model: reference.ModelRef, label: dict, rows: pd.DataFrame, why: str
) -> dict:
    """Serve persistence, fit on the last hour's labelled predictions, instead of ``model``."""
    from tasks.stages.promote import fall_back_to_persistence

    seconds = epoch_seconds(rows["ts"])
    recent = rows[seconds > seconds.max() - WINDOWS_S["1h"]].reset_index(drop=True)
    info = {"fallback_from": model.version, "fit_rows": len(recent)}
    try:
        predictor = fit_fallback(recent, label, info)
        change = fall_back_to_persistence(
            settings, predictor, recent, from_version=model.version, why=why
        )
    except (ValueError, registry.RegistryError) as exc:
        log.error("no fall-back to persistence: %s", exc)
        return {"done": False, "why": why, "error": str(exc)}
    return {"done": True, "why": why, "version": change.champion, "from_version": model.version}


def run_check(
    settings: Settings,
    *,
    current: list[str] | None = None,
    minutes: float | None = None,
    reference_data: list[str] | None = None,
    model_uri: str | None = None,
    live: bool = True,
    live_raw: list[str] | None = None,
    push: bool = True,
    log_to_mlflow: bool = True,
    retrain: Callable[[str], dict] | None = None,
    fall_back: bool = True,
    now: datetime | None = None,
    run_all: RunAll = run_in_process,
) -> CheckResult:
    """Judge the current features against the model's training sample, and the served
    predictions against what happened (``live``; raw ticks from ``ticks.raw`` or ``live_raw``
    files); push the figures; decide on retraining (:mod:`monitoring.policy`) and, when it is
    due, call ``retrain(why)`` (without it the decision is only recorded); when the champion
    stayed below persistence, serve a persistence fall-back (unless ``fall_back`` is false);
    write the report, the history and the index; log the check to MLflow.

    Data sets are read day by day through ``run_all`` (as tasks of a Dask cluster, or in this
    process: the same rows either way), the current one sampled where it is read."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    notes: list[str] = []

    uri = model_uri or registry.model_uri(settings)
    model: reference.ModelRef | None
    try:
        model = reference.resolve_model(settings, uri)
    except LookupError:
        if not reference_data:
            raise
        model = None
        notes.append(f"no model at {uri}: prediction drift not measured")
    if reference_data:
        ref = reference.training_sample(_load_data(settings, reference_data, run_all)[0], None)
        ref_source = ", ".join(map(str, reference_data))[:300]
    else:
        ref = reference.load_reference(settings, model)
        ref_source = f"training sample of {model.name} v{model.version}"

    if current:
        cur, info = _load_data(settings, current, run_all, sample_rows=CURRENT_ROWS)
        cur_source = ", ".join(map(str, current))[:300]
        cur_span = {"source": cur_source, "rows": info.rows_used, "start": info.start}
        cur_span["end"] = info.end
    else:
        minutes = minutes or settings.monitor_minutes
        cur = current_from_stream(settings, minutes, now.timestamp())
        cur_source = f"{settings.features_topic}, last {minutes:g} min"
        cur_span = _span(cur, cur_source)
        cur = _sample(cur, CURRENT_ROWS)
    if cur.empty:
        raise NoCurrentData(f"no feature rows in {cur_source}")
    if cur_span["rows"] > CURRENT_ROWS:
        notes.append(f"current: a sample of {CURRENT_ROWS} of its {cur_span['rows']} rows compared")
    timings["load_s"] = time.perf_counter() - started

    live_figures = None
    live_rows = pd.DataFrame()
    label: dict = {}
    if model is not None:
        predictor = model_store.load_predictor(model.uri)
        label = predictor.label
        ref = ref.assign(**{drift.SCORE_COLUMN: predictor.predict_proba(ref)})
        cur = cur.assign(**{drift.SCORE_COLUMN: predictor.predict_proba(cur)})
        if live:
            live_started = time.perf_counter()
            try:
                live_rows, live_notes = labelled_stream(
                    settings, predictor.label, now.timestamp(), raw=live_raw
                )
                live_figures = windowed_quality(live_rows) if len(live_rows) else None
                notes.extend(f"live: {n}" for n in live_notes)
            except BrokerUnavailable as exc:
                notes.append(f"live quality not measured: {exc}")
            timings["live_s"] = time.perf_counter() - live_started
    scored_at = time.perf_counter()

    snapshot = drift.run_report(ref, cur, FEATURE_NAMES, drift_share=settings.drift_share_limit)
    figures = drift.snapshot_figures(snapshot)
    summary = drift.summarize(figures, FEATURE_NAMES)
    reported_at = time.perf_counter()
    timings["evidently_s"] = reported_at - scored_at

    folder = report_store.drift_dir(settings.reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = report_store.report_name(folder, now)
    entry = {
        "time": now.isoformat(timespec="seconds"),
        "report": name,
        "model": None if model is None else _judged(settings, model),
        "reference": _span(ref, ref_source),
        "current": cur_span,
        "drift": summary.to_dict(),
        "limit": settings.drift_share_limit,
        "live": live_figures,
        "notes": notes + list(summary.notes),
    }
    history = report_store.read_history(folder)
    decision = policy.decide(history, entry, policy.RetrainPolicy.of(settings))
    entry["retrain"] = {"triggered": decision.due and retrain is not None, "why": decision.why}
    if decision.due and retrain is None:
        entry["retrain"]["why"] += " (due; not started by this check)"
    if decision.fallback and fall_back and model is not None:
        entry["fallback"] = _fall_back(settings, model, label, live_rows, decision.fallback_why)
    entry["serving_fallback"] = _serving_fallback(settings)
    entry["pushed"] = _push(settings, entry, history) if push else False

    if entry["retrain"]["triggered"]:
        log.warning("retraining: %s", decision.why)
        retrain_started = time.perf_counter()
        entry["retrain"]["outcome"] = retrain(decision.why)
        timings["retrain_s"] = time.perf_counter() - retrain_started
    report = report_store.save_report(snapshot, folder, name, pages.summary_section(entry))
    if log_to_mlflow:
        entry["mlflow_run_id"] = tracking.log_check(settings, entry, report, figures)
    report_store.append_history(folder, entry)
    report_store.prune(folder, keep_days=settings.reports_keep_days, now=now)
    index = report_store.write_index(folder, limit=settings.drift_share_limit)
    timings["write_s"] = time.perf_counter() - reported_at - timings.get("retrain_s", 0.0)
    timings["total_s"] = time.perf_counter() - started
    log.info(
        "drift share %.2f (%d of %d features) against %s; report %s",
        summary.share,
        summary.drifted,
        len(summary.features),
        ref_source,
        report,
    )
    return CheckResult(entry, report, index, timings)
