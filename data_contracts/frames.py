"""Frames the contracts check: raw ticks as read from recordings, and feature or training tables.

The raw frame is built from the strings the exchange sent: numbers are coerced (a value that
does not parse becomes NaN and is named in the ``unparseable`` column), timestamps are parsed to
tz-aware UTC by the engine's own parser (:func:`tasks.core.timeutil.parse_ts`: a ``+05:00``
offset is NaT here as it is refused there). The column ``refused`` holds the reason
:func:`tasks.core.messages.to_tick`, the one definition of a valid tick, refuses the tick (None
when it takes it), so the contract and the engine never disagree on a tick; the per-column
expectations then say which field broke which rule. Helper columns turn row-to-row rules into
per-row values a plain expectation can check:

- ``seq_delta`` (raw): sequence number minus the previous one from the same source (connection or
  recording file), on the first ticker of each envelope; NaN where there is no previous one.
- ``receive_lead_s`` (raw): seconds the timestamp lies after the receive time on the exchange's
  clock (:func:`tasks.core.messages.receive_lead_s`; recordings estimate the receive time from
  the neighbouring lines), NaN where either does not parse.
- ``ts_step_s`` (features, training): seconds since the previous row of the same product.
- ``split_gap_s`` (training): seconds between a row and the latest row of the same product in an
  earlier split (``train`` before ``valid`` before ``test``, or fold ids in numeric order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.messages import (
    TICKER_NUMBER_FIELDS,
    MessageError,
    RawTick,
    preview,
    receive_lead_s,
    to_tick,
)
from tasks.core.timeutil import TimestampError, parse_ts
from tasks.io.recordings import BadLine, expand_inputs, read_ticks

RAW_NUMERIC_FIELDS = TICKER_NUMBER_FIELDS
RAW_COLUMNS = (
    "record_id",
    "product_id",
    "source",
    "sequence_num",
    "index",
    "event_type",
    "timestamp",
    *RAW_NUMERIC_FIELDS,
    "unparseable",
    "refused",
    "seq_delta",
    "receive_lead_s",
)
SPLIT_ORDER = {"train": 0, "valid": 1, "validation": 1, "test": 2}


@dataclass
class RawBatch:
    """The ticks of some recordings as a frame, and the lines that gave no tick (counted).

    ``truncated`` holds the cut-off tails of files whose writer stopped mid-write (a crash):
    dropped and reported, but not counted against the bad-line fraction, since a capture
    killed once would otherwise have its last file set aside on every run.
    """

    frame: pd.DataFrame
    bad_lines: list[BadLine] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    truncated: list[BadLine] = field(default_factory=list)

    @property
    def lines(self) -> int:
        """Ticker objects read plus bad lines: the denominator of the bad-line fraction."""
        return len(self.frame) + len(self.bad_lines)


def read_raw_batch(paths: Iterable[str | Path]) -> RawBatch:
    """Recording files or directories as one raw batch; ``FileNotFoundError`` if one is absent."""
    paths = list(paths)
    files = expand_inputs(paths)
    if not files:
        raise FileNotFoundError(
            "no recordings (*.ndjson, *.ndjson.gz) in " + ", ".join(map(str, paths))
        )
    batch = raw_batch(read_ticks(files))
    batch.sources = [str(p) for p in files]
    return batch


def raw_batch(items: Iterable[RawTick | BadLine]) -> RawBatch:
    ticks: list[RawTick] = []
    bad: list[BadLine] = []
    truncated: list[BadLine] = []
    for item in items:
        if isinstance(item, BadLine):
            (truncated if item.truncated else bad).append(item)
        else:
            ticks.append(item)
    return RawBatch(raw_frame(ticks), bad, truncated=truncated)


def raw_frame(ticks: Sequence[RawTick]) -> pd.DataFrame:
    """One row per ticker object, in arrival order, with the columns of :data:`RAW_COLUMNS`."""
    frame = pd.DataFrame(
        {
            "record_id": pd.Series([t.record_id for t in ticks], dtype=object),
            "product_id": pd.Series([t.product_id for t in ticks], dtype=object),
            "source": pd.Series([t.source for t in ticks], dtype=object),
            "sequence_num": pd.Series([t.sequence_num for t in ticks], dtype="int64"),
            "index": pd.Series([t.index for t in ticks], dtype="int64"),
            "event_type": pd.Series([t.event_type for t in ticks], dtype=object),
        }
    )
    problems: list[list[str]] = [[] for _ in ticks]

    seconds = np.array([_event_time(t) for t in ticks], dtype="float64")
    micros = pd.Series(seconds * 1e6).round()
    parsed = pd.to_datetime(micros, unit="us", utc=True, errors="coerce")  # NaT out of range
    frame["timestamp"] = parsed.astype("datetime64[ns, UTC]")
    for i in np.flatnonzero(parsed.isna().to_numpy()):
        problems[i].append(f"timestamp={preview(ticks[i].timestamp, 80)}")

    for name in RAW_NUMERIC_FIELDS:
        raw = [t.ticker.get(name) for t in ticks]
        numbers, bad = _coerce_numbers(raw)
        frame[name] = numbers
        for i in np.flatnonzero(bad):
            problems[i].append(f"{name}={preview(raw[i], 80)}")

    frame["unparseable"] = pd.Series(["; ".join(p) if p else None for p in problems], dtype=object)
    frame["refused"] = pd.Series([_refusal(t) for t in ticks], dtype=object)
    frame["seq_delta"] = _sequence_deltas(frame)
    frame["receive_lead_s"] = pd.Series([_lead(t) for t in ticks], dtype="float64")
    return frame


def _event_time(tick: RawTick) -> float:
    """The tick's event time in epoch seconds, NaN when its timestamp does not parse."""
    if tick.event_time == tick.event_time:
        return tick.event_time
    try:
        return parse_ts(tick.timestamp)
    except TimestampError:
        return np.nan


def _lead(tick: RawTick) -> float:
    ts = _event_time(tick)
    try:
        return receive_lead_s(ts, tick) if ts == ts else np.nan
    except MessageError:
        return np.nan


def _refusal(tick: RawTick) -> str | None:
    """Why :func:`tasks.core.messages.to_tick` refuses the tick, or None."""
    try:
        to_tick(tick)
    except MessageError as exc:
        return str(exc)
    return None


def _coerce_numbers(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Floats (NaN when absent or not a finite number) and a mask of present-but-bad values."""
    series = pd.Series(values, dtype=object)
    present = (series.notna() & (series != "")).to_numpy(dtype=bool)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", copy=True)
    finite = np.isfinite(numbers)
    numbers[~finite] = np.nan
    return numbers, present & ~finite


def _sequence_deltas(frame: pd.DataFrame) -> pd.Series:
    """Sequence step from the previous envelope of the same source (tickers of one envelope share
    a sequence number, so only each envelope's first ticker takes part)."""
    firsts = frame[frame["index"] == 0]
    deltas = firsts.groupby("source", sort=False)["sequence_num"].diff().astype("float64")
    return deltas.reindex(frame.index)


# ---------------------------------------------------------------------------------- tables


def read_table(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Parquet files or data set directories (hive partitions, as the backfill writes them)
    concatenated in order; partition columns come back as plain strings, not categories."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise FileNotFoundError("no Parquet paths given")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
    frames = [pd.read_parquet(path) for path in paths]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object)
    return frame


def with_time_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``ts_step_s``: seconds since the previous row of the same product."""
    out = frame.copy()
    if "ts" in out.columns and "product_id" in out.columns:
        seconds = _seconds(out["ts"])
        out["ts_step_s"] = seconds.groupby(out["product_id"], sort=False).diff()
    return out


def with_split_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``split_gap_s``: for a row of a later split, seconds since the latest row of the
    same product in any earlier split (NaN in the first split, or if ``split`` is unknown)."""
    out = frame.copy()
    if not {"ts", "product_id", "split"} <= set(out.columns):
        return out
    ranks = split_ranks(out["split"])
    seconds = _seconds(out["ts"])
    gaps = pd.Series(np.nan, index=out.index, dtype="float64")
    for _product, rows in out.groupby("product_id", sort=False).groups.items():
        rank = ranks.loc[rows]
        secs = seconds.loc[rows]
        latest = secs.groupby(rank).max().sort_index()
        earlier_max = latest.cummax().shift(1)  # latest time of every earlier split
        gaps.loc[rows] = secs - rank.map(earlier_max)
    out["split_gap_s"] = gaps
    return out


def split_ranks(split: pd.Series) -> pd.Series:
    """Order of the splits: named (``train`` < ``valid`` < ``test``) or numeric fold ids."""
    if splits_are_folds(split):
        return pd.to_numeric(split, errors="coerce").astype("float64")
    return split.map(SPLIT_ORDER).astype("float64")


def splits_are_folds(split: pd.Series) -> bool:
    """True when every split value is a number (walk-forward fold ids)."""
    present = split.dropna()
    return bool(len(present)) and bool(pd.to_numeric(present, errors="coerce").notna().all())


def _seconds(ts: pd.Series) -> pd.Series:
    """Epoch seconds from datetimes (tz-aware or naive UTC) or from numbers already in seconds."""
    if pd.api.types.is_datetime64_any_dtype(ts):
        values = ts.dt.tz_convert("UTC") if ts.dt.tz is not None else ts.dt.tz_localize("UTC")
        epoch = pd.Timestamp("1970-01-01", tz="UTC")
        return (values - epoch).dt.total_seconds()
    return pd.to_numeric(ts, errors="coerce").astype("float64")
