"""Data for training and evaluation: backfilled Parquet as is, recordings backfilled first.

``--data PATHS`` of ``train``, ``evaluate`` and ``validate`` accept Parquet files or directories
(a backfill's output) and recordings (``*.ndjson[.gz]`` or directories of them). Recordings are
backfilled into a cache keyed by the files' names, sizes and modification times and the feature
set version, so a second run on the same recordings skips the backfill. A cache file is written
under a temporary name and renamed (:mod:`tasks.io.feature_store`): two runs filling it at once,
or a run killed midway, never leave a partial file behind.

A row budget (``max_rows_per_product``, :func:`tasks.core.row_budget.pick_sessions`) keeps one
contiguous session of each day of a product. A partitioned store is read through a pyarrow data
set: the rows of each (product, date) partition are counted from the files' metadata, and the
kept partitions are read one at a time and cut to their session at once, so the memory a read
takes follows the budget, not the store's size.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.features import FEATURE_SET_VERSION
from tasks.core.row_budget import pick_sessions
from tasks.io.feature_store import load_dataset, load_partition, partition_rows
from tasks.io.recordings import expand_inputs, is_recording
from tasks.stages.backfill import backfill

log = logging.getLogger("cryptovol.dataload")


@dataclass
class LoadInfo:
    parquet_paths: list[str] = field(default_factory=list)
    recordings: int = 0
    backfill_cached: bool | None = None
    backfill_s: float = 0.0
    load_s: float = 0.0
    cache_path: str | None = None
    max_rows_per_product: int | None = None
    rows_available: int = 0
    rows_used: int = 0
    days_used: dict[str, int] = field(default_factory=dict)  # days with a kept session, per product
    days_available: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_parquet(path: Path) -> bool:
    if path.is_dir():
        return any(path.rglob("*.parquet"))
    return path.suffix == ".parquet"


def _cache_key(recordings: list[Path]) -> str:
    digest = hashlib.sha256(FEATURE_SET_VERSION.encode())
    for path in sorted(p.resolve() for p in recordings):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be data for ``--data``/``--current``, or None: missing, or a file that
    is neither a recording (by its name) nor Parquet (by its footer)."""
    if not path.exists():
        return f"no such data: {path}"
    if path.is_dir() or is_recording(path):
        return None
    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"{path} is neither a Parquet file nor a recording (*.ndjson[.gz]): {detail}"
    return None


def load_frame(
    paths: Iterable[str | Path], cache_dir: Path, max_rows_per_product: int | None = None
) -> tuple[pd.DataFrame, LoadInfo]:
    """The feature/label frame of every input (Parquet loaded, recordings backfilled, cached),
    a session of each day of each product within ``max_rows_per_product`` (None: every row)."""
    info = LoadInfo(max_rows_per_product=max_rows_per_product)
    parquet: list[Path] = []
    recording_inputs: list[Path] = []
    for item in map(Path, paths):
        if not item.exists():
            raise FileNotFoundError(f"no such data: {item}")
        (parquet if _is_parquet(item) else recording_inputs).append(item)
    if recording_inputs:
        recordings = expand_inputs(recording_inputs)
        if not recordings:
            raise FileNotFoundError(f"no recordings (*.ndjson[.gz]) in {recording_inputs}")
        info.recordings = len(recordings)
        target = cache_dir / f"backfill-{_cache_key(recordings)}.parquet"
        info.cache_path = str(target)
        info.backfill_cached = target.exists()
        if not target.exists():
            started = time.perf_counter()
            backfill(recordings, target)  # written whole or not at all; NoRows when empty
            info.backfill_s = time.perf_counter() - started
            log.info(
                "backfilled %d recordings in %.1f s -> %s", len(recordings), info.backfill_s, target
            )
        parquet.append(target)
    started = time.perf_counter()
    info.parquet_paths = [str(p) for p in parquet]
    frame = _within_budget(parquet, max_rows_per_product, info)
    info.load_s = time.perf_counter() - started
    return frame, info


def _within_budget(
    parquet: list[Path], max_rows_per_product: int | None, info: LoadInfo
) -> pd.DataFrame:
    """The kept sessions of ``parquet``: stores read by partition, single files read whole."""
    stores = [p for p in parquet if p.is_dir()]
    files = load_dataset([p for p in parquet if not p.is_dir()])
    file_dates = files["ts"].dt.strftime("%Y-%m-%d")
    sizes: Counter[tuple[str, str]] = Counter()
    store_keys = [partition_rows(store) for store in stores]
    for keys in store_keys:
        sizes.update(keys)
    file_groups = files.groupby([files["product_id"], file_dates], sort=True).indices
    sizes.update({key: len(rows) for key, rows in file_groups.items()})
    days: dict[str, dict[str, int]] = {}
    for (product, date), rows in sizes.items():
        days.setdefault(product, {})[date] = rows
    kept = {
        (product, date): span
        for product, counts in sorted(days.items())
        for date, span in pick_sessions(counts, max_rows_per_product).items()
    }
    parts = []
    for (product, date), (start, stop) in kept.items():
        # one day at a time: a store's partitions, then the same day of the single files
        day = [
            load_partition(store, product, date)
            for store, keys in zip(stores, store_keys, strict=True)
            if (product, date) in keys
        ]
        if (product, date) in file_groups:
            day.append(files.iloc[file_groups[(product, date)]])
        frame = pd.concat(day, ignore_index=True) if len(day) > 1 else day[0]
        frame = frame.sort_values("ts", kind="stable", ignore_index=True)
        parts.append(frame.iloc[start:stop])
    frame = pd.concat(parts, ignore_index=True) if parts else load_dataset([])
    frame = frame.sort_values(["product_id", "ts"], kind="stable", ignore_index=True)
    info.rows_available = sum(sizes.values())
    info.rows_used = len(frame)
    info.days_available = {p: len(counts) for p, counts in sorted(days.items())}
    info.days_used = dict(sorted(Counter(p for p, _ in kept).items()))
    if info.rows_used < info.rows_available:
        log.info(
            "row budget %d per product: %d of %d rows, sessions of %s of %s days",
            max_rows_per_product,
            info.rows_used,
            info.rows_available,
            info.days_used,
            info.days_available,
        )
    return frame
