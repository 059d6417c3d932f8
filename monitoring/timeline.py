"""The timeline: per product, what the detector saw and said over a span, against what happened.

Built from the stream: the served predictions on ``ticks.predictions`` joined, by the record id
of their tick, with the feature and label data set the training code computes from the raw ticks
(``ticks.raw``, or the recordings that were replayed), as live quality does. So a row's forward
volatility and label are exactly those of training, and known once 60 s have passed.

Spike episodes are the scorer's own (:mod:`tasks.core.episodes`, run over the recorded
predictions); real spike episodes are the same grouping applied to the labels. The pages are
written under ``<reports_dir>/timeline/`` and ``cryptovol reports`` serves them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.live import _ticks_from_files
from monitoring.pages import timeline_index_page, timeline_page
from tasks.core.dataset import feature_frame
from tasks.core.episodes import (
    PERSISTENCE_COLUMN,
    VOLATILITY_COLUMN,
    Episode,
    Observation,
    episodes_of,
)
from tasks.core.evaluation import epoch_seconds
from tasks.core.features import EngineConfig, FeatureEngine, restart_lookback_s
from tasks.core.labels import LabelSpec
from tasks.core.messages import Tick
from tasks.io import streams
from tasks.settings import Settings

TIMELINE_DIR = "timeline"


@dataclass(frozen=True)
class Timeline:
    product_id: str
    rows: pd.DataFrame  # ts (epoch s), mid, score, threshold, model_version, fwd_vol, y
    tau: float | None
    predicted: list[Episode]
    real: list[Episode]


def timeline_rows(ticks: list[Tick], predictions: pd.DataFrame, label: LabelSpec) -> pd.DataFrame:
    """One row per scored grid second: mid price, the served prediction, and the forward
    volatility and label where known (NaN until 60 s later)."""
    frame = feature_frame(ticks, FeatureEngine())
    mids = {tick.record_id: tick.mid for tick in ticks}
    served = predictions.drop_duplicates("record_id")[
        ["record_id", "score", "threshold", "model_version"]
    ]
    rows = frame.merge(served, on="record_id", how="inner", validate="many_to_one")
    return pd.DataFrame(
        {
            "product_id": rows["product_id"].to_numpy(),
            "ts": epoch_seconds(rows["ts"]),
            "mid": rows["record_id"].map(mids).to_numpy(dtype=float),
            "score": rows["score"].to_numpy(dtype=float),
            "threshold": rows["threshold"].to_numpy(dtype=float),
            "model_version": rows["model_version"].astype(str).to_numpy(),
            "fwd_vol": rows[label.fwd_column].to_numpy(dtype=float),
            "y": label.apply(rows).to_numpy(dtype=float),
            VOLATILITY_COLUMN: rows[VOLATILITY_COLUMN].to_numpy(dtype=float),
            PERSISTENCE_COLUMN: rows[PERSISTENCE_COLUMN].to_numpy(dtype=float),
        }
    )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def timelines(rows: pd.DataFrame, label: LabelSpec, quiet_s: float) -> list[Timeline]:
    """Per product: its rows, the predicted episodes and the real ones."""
    tau = label.tau if label.mode == "absolute" else None
    out = []
    for product, part in rows.groupby("product_id", sort=True):
        part = part.sort_values("ts", kind="stable", ignore_index=True)
        predicted, real = [], []
        for r in part.itertuples(index=False):
            volatility = _finite(getattr(r, VOLATILITY_COLUMN))
            predicted.append(
                Observation(
                    str(product),
                    r.ts,
                    r.score,
                    r.threshold,
                    volatility=volatility,
                    persistence=None,
                    tau=tau,
                    model_version=r.model_version,
                )
            )
            # a real spike is a labelled second: the same grouping, on the labels
            spike = 1.0 if r.y == 1.0 else 0.0
            real.append(Observation(str(product), r.ts, spike, 1.0, None, None, None))
        out.append(
            Timeline(
                str(product),
                part,
                tau,
                episodes_of(predicted, quiet_s),
                episodes_of(real, quiet_s),
            )
        )
    return out


def read_stream(
    settings: Settings, since: float, until: float, raw: list[str] | None = None
) -> tuple[list[Tick], pd.DataFrame, list[str]]:
    """The raw ticks (from ``raw`` files, else ``ticks.raw``) and the predictions of a span."""
    notes = []
    values = streams.iter_window(settings, settings.predictions_topic, since)
    predictions, bad = streams.prediction_records(values)
    if bad:
        notes.append(f"{bad} malformed records on {settings.predictions_topic} skipped")
    if not predictions.empty:
        at = epoch_seconds(predictions["ts"])
        predictions = predictions[(at >= since) & (at <= until)]
    if raw:
        ticks = _ticks_from_files(raw)
    else:
        lookback = restart_lookback_s(EngineConfig())
        ticks, bad = streams.raw_ticks(
            streams.iter_window(settings, settings.raw_topic, since - lookback)
        )
        if bad:
            notes.append(f"{bad} malformed records on {settings.raw_topic} skipped")
    return ticks, predictions, notes


def write_timelines(
    settings: Settings,
    label: dict,
    since: float,
    until: float,
    *,
    raw: list[str] | None = None,
) -> list[Path]:
    """The timeline page of every product with predictions in the span, and their index;
    returns the pages written (the index first)."""
    spec = LabelSpec.from_dict(label)
    ticks, predictions, notes = read_stream(settings, since, until, raw)
    if predictions.empty:
        rows = pd.DataFrame(columns=["product_id", "ts"])
        notes.append(f"no predictions on {settings.predictions_topic} in the span")
    else:
        rows = timeline_rows(ticks, predictions, spec)
        rows = rows[(rows["ts"] >= since) & (rows["ts"] <= until)]
    folder = settings.reports_dir / TIMELINE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    found = timelines(rows, spec, settings.episode_quiet_s) if len(rows) else []
    for timeline in found:
        path = folder / f"{timeline.product_id}.html"
        path.write_text(timeline_page(timeline, settings.episode_quiet_s))
        written.append(path)
    index = folder / "index.html"
    index.write_text(timeline_index_page(found, since, until, notes))
    return [index, *written]


def span_of_recordings(paths: list[str]) -> tuple[float, float]:
    """The event-time span of recordings (to draw a replayed recording whole)."""
    times = np.array([t.ts for t in _ticks_from_files(paths)], dtype=float)
    if not len(times):
        raise ValueError(f"no ticks in {paths}")
    return float(times.min()), float(times.max())
