"""Backfill: recordings or the raw archive -> features and labels in Parquet.

Every tick goes through :meth:`FeatureEngine.process` exactly as in the stream, in event-time
order per product (a stable sort by time: files of one product merge, ties keep file order).
The per-tick rows are then resampled to one row per product and second of the label grid
(:func:`tasks.core.labels.second_grid`): the features of the last tick at or before the second, the
forward volatility over the next 60 s and the trailing volatility of the past 900 s.

Output: one ``.parquet`` file when the path ends in ``.parquet``, else a directory data set
partitioned by ``product_id`` and ``date`` (hive layout; a rerun replaces the partitions it
writes). :func:`load_dataset` reads either back with the columns of :data:`SCHEMA`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.features import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    EngineConfig,
    FeatureEngine,
    FeatureRow,
)
from tasks.core.labels import HORIZON_S, TRAILING_S, add_label_columns, second_grid
from tasks.core.messages import MessageError, Tick, to_tick
from tasks.core.timeutil import format_ts
from tasks.io.recordings import BadLine, expand_inputs, read_ticks
from tasks.settings import Settings

log = logging.getLogger(__name__)

FWD_COLUMN = f"fwd_vol_{HORIZON_S}"
TRAIL_COLUMN = f"trail_vol_{TRAILING_S}"
_UTC_US = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("ts", _UTC_US),
        ("tick_ts", _UTC_US),
        ("record_id", pa.string()),
        *((name, pa.float64()) for name in FEATURE_NAMES),
        ("feature_set_version", pa.string()),
        (FWD_COLUMN, pa.float64()),
        (TRAIL_COLUMN, pa.float64()),
        ("segment", pa.int64()),
        ("source", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
_PARTITIONING = ds.partitioning(
    pa.schema([("product_id", pa.string()), ("date", pa.string())]), flavor="hive"
)
_REPORTED = 5  # bad lines and rejected ticks quoted in the stats


@dataclass
class BackfillStats:
    files: int = 0
    ticks: int = 0  # ticker objects read
    rejected: int = 0  # tickers that failed validation (MessageError)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    first_rejects: list[str] = field(default_factory=list)
    bad_lines: int = 0
    first_bad_lines: list[str] = field(default_factory=list)
    processed: int = 0
    duplicates: int = 0
    late_adjusted: int = 0
    late_dropped: int = 0
    gaps_restarted: int = 0
    rows: int = 0
    labelled_rows: int = 0
    products: list[str] = field(default_factory=list)
    start: str | None = None  # first and last second with a row
    end: str | None = None
    seconds: float = 0.0  # wall time
    out: str = ""
    feature_set_version: str = FEATURE_SET_VERSION

    def as_dict(self) -> dict:
        return asdict(self)


def load_ticks(paths: Iterable[Path], stats: BackfillStats | None = None) -> list[Tick]:
    """Valid ticks of the recordings, stably sorted by event time; bad input counted in stats."""
    stats = stats if stats is not None else BackfillStats()
    reasons: Counter[str] = Counter(stats.reject_reasons)
    ticks: list[Tick] = []
    for item in read_ticks(paths):
        if isinstance(item, BadLine):
            stats.bad_lines += 1
            if len(stats.first_bad_lines) < _REPORTED:
                stats.first_bad_lines.append(item.describe())
            continue
        stats.ticks += 1
        try:
            ticks.append(to_tick(item))
        except MessageError as exc:
            stats.rejected += 1
            reasons[str(exc).split(":", 1)[0]] += 1
            if len(stats.first_rejects) < _REPORTED:
                stats.first_rejects.append(f"{item.record_id}: {exc}")
    stats.reject_reasons = dict(reasons)
    ticks.sort(key=attrgetter("ts"))  # stable: ticks of one file keep their order on ties
    return ticks


def _engine_rows(ticks: Iterable[Tick], engine: FeatureEngine) -> Iterator[tuple[Tick, FeatureRow]]:
    process = engine.process
    for tick in ticks:
        row = process(tick)
        if row is not None:
            yield tick, row


def batch_features(
    inputs: Iterable[str | Path], config: EngineConfig | None = None
) -> Iterator[FeatureRow]:
    """Every accepted tick's features, in processing order: the batch twin of the stream."""
    engine = FeatureEngine(config)
    for _tick, row in _engine_rows(load_ticks(expand_inputs(inputs)), engine):
        yield row


class _ProductSeries:
    """One product's accepted ticks: time and mid of every one (for the label grid), and the
    features of only those that can be the last tick at or before a whole second."""

    __slots__ = ("kept", "mids", "pending", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.mids: list[float] = []
        self.kept: dict[int, tuple[FeatureRow, str]] = {}  # tick position -> (row, source)
        self.pending: tuple[int, FeatureRow, str] | None = None

    def add(self, tick: Tick, row: FeatureRow) -> None:
        bid, ask = tick.best_bid, tick.best_ask
        mid = (bid + ask) * 0.5 if bid == bid and ask == ask else tick.price  # as the engine
        pending = self.pending
        # the previous tick is the last one at or before some second s iff ts_prev <= s < ts
        if pending is not None and math.ceil(pending[1].ts) < row.ts:
            self.kept[pending[0]] = (pending[1], pending[2])
        self.pending = (len(self.times), row, tick.source)
        self.times.append(row.ts)
        self.mids.append(mid)

    def finish(self) -> None:
        if self.pending is not None:
            self.kept[self.pending[0]] = (self.pending[1], self.pending[2])
            self.pending = None


def feature_frame(ticks: Iterable[Tick], engine: FeatureEngine) -> pd.DataFrame:
    """One row per product and grid second, with features and labels (columns of SCHEMA)."""
    series: dict[str, _ProductSeries] = {}
    for tick, row in _engine_rows(ticks, engine):
        product = series.get(tick.product_id)
        if product is None:
            product = series[tick.product_id] = _ProductSeries()
        product.add(tick, row)
    frames = []
    for name in sorted(series):
        product = series[name]
        product.finish()
        times = np.array(product.times, dtype=np.float64)
        accepted = pd.DataFrame({"product_id": name, "ts": times, "mid": product.mids})
        grid = add_label_columns(second_grid(accepted), HORIZON_S, TRAILING_S)
        if grid.empty:
            continue
        picks = grid["tick_row"].to_numpy()
        kept = [product.kept[i] for i in picks]
        frame = pd.DataFrame(
            {
                "product_id": name,
                "ts": pd.to_datetime(grid["second"].to_numpy() * 1_000_000, unit="us", utc=True),
                "tick_ts": pd.to_datetime(
                    np.round(times[picks] * 1e6).astype(np.int64), unit="us", utc=True
                ),
                "record_id": [row.record_id for row, _source in kept],
            }
        )
        values = np.array([row.values for row, _source in kept], dtype=np.float64)
        features = pd.DataFrame(values, columns=list(FEATURE_NAMES))
        frame = pd.concat([frame, features], axis=1)
        frame["feature_set_version"] = FEATURE_SET_VERSION
        frame[FWD_COLUMN] = grid[FWD_COLUMN].to_numpy()
        frame[TRAIL_COLUMN] = grid[TRAIL_COLUMN].to_numpy()
        frame["segment"] = grid["segment"].to_numpy(dtype=np.int64)
        frame["source"] = [source for _row, source in kept]
        frames.append(frame)
    if not frames:
        return SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def write_dataset(frame: pd.DataFrame, out: str | Path) -> None:
    """A single file for ``*.parquet``, else a hive data set by product_id and date."""
    out = Path(out)
    table = pa.Table.from_pandas(frame[list(COLUMNS)], schema=SCHEMA, preserve_index=False)
    if out.suffix == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
        return
    dates = pc.strftime(table["ts"], format="%Y-%m-%d")
    table = table.append_column("date", dates)
    out.mkdir(parents=True, exist_ok=True)
    ds.write_dataset(
        table,
        out,
        format="parquet",
        partitioning=_PARTITIONING,
        basename_template="part-{i}.parquet",
        existing_data_behavior="delete_matching",
    )


def load_dataset(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """A backfill output (files or partitioned directories), sorted by product_id and ts."""
    if isinstance(paths, str | Path):
        paths = [paths]
    tables = []
    for path in map(Path, paths):
        if path.is_dir():
            table = ds.dataset(path, format="parquet", partitioning=_PARTITIONING).to_table()
            table = table.select(list(COLUMNS)).cast(SCHEMA)
        else:
            table = pq.read_table(path).select(list(COLUMNS)).cast(SCHEMA)
        tables.append(table)
    if not tables:
        return SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables).to_pandas()
    return frame.sort_values(["product_id", "ts"], kind="stable", ignore_index=True)


def feature_store(settings: Settings) -> Path:
    """Where the scheduled backfill writes: a partitioned data set under the data directory."""
    return settings.data_dir / "features"


def backfill(
    inputs: Iterable[str | Path], out: str | Path, config: EngineConfig | None = None
) -> BackfillStats:
    """Recordings or archive -> Parquet features and labels; the stats of the run."""
    started = time.perf_counter()
    stats = BackfillStats(out=str(out))
    paths = expand_inputs(inputs)
    stats.files = len(paths)
    ticks = load_ticks(paths, stats)
    engine = FeatureEngine(config)
    frame = feature_frame(ticks, engine)
    del ticks
    for name, count in engine.stats.as_dict().items():
        setattr(stats, name, count)
    stats.rows = len(frame)
    stats.labelled_rows = int(frame[FWD_COLUMN].notna().sum())
    stats.products = sorted(frame["product_id"].unique().tolist())
    if len(frame):
        stats.start = format_ts(frame["ts"].min().timestamp())
        stats.end = format_ts(frame["ts"].max().timestamp())
    write_dataset(frame, out)
    stats.seconds = time.perf_counter() - started
    log.info(
        "backfill: %d files, %d ticks -> %d rows (%d labelled) in %.1f s -> %s",
        stats.files,
        stats.ticks,
        stats.rows,
        stats.labelled_rows,
        stats.seconds,
        out,
    )
    return stats
