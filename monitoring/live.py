"""Live model quality from what the stream produced: ``ticks.predictions`` joined with the labels
the training code computes from the raw ticks (``ticks.raw``, or recordings and the raw archive).

The raw ticks are read from :func:`tasks.core.features.restart_lookback_s` before the window on,
so the feature engine's windows are full again by the window's first tick and the baselines' inputs
equal the stream's. The figures themselves are :mod:`tasks.core.live_quality`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tasks.core.dataset import feature_frame
from tasks.core.features import EngineConfig, FeatureEngine, restart_lookback_s
from tasks.core.labels import LabelSpec
from tasks.core.live_quality import WINDOWS_S, labelled_predictions, windowed_quality
from tasks.core.messages import MessageError, Tick, to_tick
from tasks.io import streams
from tasks.io.recordings import BadLine, expand_inputs, read_ticks
from tasks.settings import Settings

log = logging.getLogger("cryptovol.live")

MARGIN_S = 600.0  # read this much more than the longest window (delivery and replay delays)


def _ticks_from_files(paths: list[str]) -> list[Tick]:
    ticks = []
    for item in read_ticks(expand_inputs([Path(p) for p in paths])):
        if isinstance(item, BadLine):
            continue
        try:
            ticks.append(to_tick(item))
        except MessageError:
            continue
    return ticks


def stream_quality(
    settings: Settings,
    label: dict,
    now: float,
    *,
    raw: list[str] | None = None,
    windows_s: dict[str, float] = WINDOWS_S,
) -> tuple[dict[str, dict] | None, list[str]]:
    """Figures per window (None when no prediction has a known label yet) and notes."""
    rows, notes = labelled_stream(settings, label, now, raw=raw, windows_s=windows_s)
    return (None if rows.empty else windowed_quality(rows, windows_s)), notes


def labelled_stream(
    settings: Settings,
    label: dict,
    now: float,
    *,
    raw: list[str] | None = None,
    windows_s: dict[str, float] = WINDOWS_S,
) -> tuple[pd.DataFrame, list[str]]:
    """The served predictions of the longest window whose label is known now, each with its
    feature row and label (``y``), and notes; empty rows when there are none."""
    notes: list[str] = []
    since = now - max(windows_s.values()) - MARGIN_S
    values = streams.iter_window(settings, settings.predictions_topic, since)
    predictions, bad = streams.prediction_records(values)
    if bad:
        notes.append(f"{bad} malformed records on {settings.predictions_topic} skipped")
    if predictions.empty:
        return pd.DataFrame(), [
            *notes,
            f"no predictions on {settings.predictions_topic} in the window",
        ]
    if raw:
        ticks = _ticks_from_files(raw)
    else:
        lookback = restart_lookback_s(EngineConfig())
        raw_values = streams.iter_window(settings, settings.raw_topic, since - lookback)
        ticks, bad = streams.raw_ticks(raw_values)
        if bad:
            notes.append(f"{bad} malformed records on {settings.raw_topic} skipped")
    frame = feature_frame(ticks, FeatureEngine())
    rows = labelled_predictions(frame, predictions, LabelSpec.from_dict(label))
    if rows.empty:
        notes.append("no prediction has a known label yet (60 s after it is made)")
    return rows, notes
