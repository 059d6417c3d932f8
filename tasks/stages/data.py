"""Data for training and evaluation: backfilled Parquet as is, recordings backfilled first.

``--data PATHS`` of ``train``, ``evaluate`` and ``validate`` accept Parquet files or directories
(a backfill's output) and recordings (``*.ndjson[.gz]`` or directories of them). Recordings are
backfilled into a cache keyed by the files' names, sizes and modification times and the feature
set version, so a second run on the same recordings skips the backfill. A cache file is written
under a temporary name and renamed (:mod:`tasks.io.feature_store`): two runs filling it at once,
or a run killed midway, never leave a partial file behind.

A row budget keeps one contiguous session of each day of a product
(:func:`tasks.core.row_budget.pick_sessions`), within ``max_rows_per_product`` and an equal share of
the total ``max_rows`` (:func:`tasks.core.row_budget.product_budget`). A partitioned store is read
through a pyarrow data set: the rows of each (product, date) partition are counted from the files'
metadata, and each kept partition is read by its own call of :func:`read_day` and cut to its session
at once, so the memory a read takes follows the budget, not the store's size.

Those calls go through ``run_all``: in this process by default, or as tasks of a Dask cluster
(the drift check's ``--workers``). A seeded sample (``sample_rows``) is drawn from the positions
of every kept row before anything is read, and each day keeps its share where it is read: the
same rows whichever worker reads which day, and only the sample travels back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from tasks.core.row_budget import pick_sessions, product_budget
from tasks.io import heap
from tasks.io.dask_cluster import RunAll, run_in_process
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
    max_rows_per_product: int | None = None  # the caps asked for (None: none)
    max_rows: int | None = None
    product_budget: int | None = None  # the rows each product could keep: the cap applied
    rows_available: int = 0
    rows_used: int = 0
    days_used: dict[str, int] = field(default_factory=dict)  # days with a kept session, per product
    days_available: dict[str, int] = field(default_factory=dict)
    start: str | None = None  # the first and last time of the rows used (before a sample)
    end: str | None = None

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
    paths: Iterable[str | Path],
    cache_dir: Path,
    max_rows_per_product: int | None = None,
    *,
    max_rows: int | None = None,
    columns: Sequence[str] | None = None,
    float32_features: bool = False,
    sample_rows: int | None = None,
    run_all: RunAll = run_in_process,
) -> tuple[pd.DataFrame, LoadInfo]:
    """The feature/label frame of every input (Parquet loaded, recordings backfilled, cached),
    a session of each day of each product within ``max_rows_per_product`` and an equal share of
    ``max_rows`` (None: no such cap), sorted by product and time.

    ``columns``: only these (default: every column of the data set). ``float32_features``: the
    features in single precision (half their memory; labels stay double). ``sample_rows``: at most
    this many of the kept rows, a seeded sample in the same order (``info.rows_used`` counts the
    kept rows before it). ``run_all`` runs the reads of the days (module docstring)."""
    info = LoadInfo(max_rows_per_product=max_rows_per_product, max_rows=max_rows)
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
    reading = (columns, float32_features, sample_rows)
    frame = _within_budget(parquet, info, *reading, run_all)
    _return_freed_memory()
    info.load_s = time.perf_counter() - started
    return frame, info


def _return_freed_memory() -> None:
    """Give the memory the reads freed back to the system: Arrow's allocator keeps its pages for
    reads to come and glibc's heap the pages of a read's many small objects, but none come, and
    training, the peak that follows, takes its large arrays elsewhere (about 0.6 KB a row read)."""
    pa.default_memory_pool().release_unused()
    heap.trim()


@dataclass(frozen=True)
class DayRead:
    """One kept (product, date): the stores holding it, the rows of single files on that day,
    the session's ``[start, stop)`` among the day's rows in time order, and the positions within
    the session to keep (None: all)."""

    product: str
    date: str
    stores: tuple[str, ...]
    file_rows: pd.DataFrame | None
    start: int
    stop: int
    columns: tuple[str, ...] | None = None
    float32_features: bool = False
    keep: np.ndarray | None = None


@dataclass
class DayRows:
    frame: pd.DataFrame  # the kept (sampled) rows
    first: pd.Timestamp | None  # the session's first and last time, before sampling
    last: pd.Timestamp | None


def read_day(read: DayRead) -> DayRows:
    """The session of one product and day (on whichever worker runs it)."""
    day = [load_partition(store, read.product, read.date) for store in read.stores]
    if read.file_rows is not None:
        day.append(read.file_rows)
    frame = pd.concat(day, ignore_index=True) if len(day) > 1 else day[0]
    if read.columns is not None:
        frame = frame[list(read.columns)]
    if read.float32_features:
        names = [name for name in FEATURE_NAMES if name in frame]
        frame = frame.astype(dict.fromkeys(names, np.float32))
    frame = frame.sort_values("ts", kind="stable", ignore_index=True)
    session = frame.iloc[read.start : read.stop]
    first, last = (session["ts"].iloc[0], session["ts"].iloc[-1]) if len(session) else (None, None)
    if read.keep is not None:
        session = session.iloc[read.keep]
    return DayRows(session.reset_index(drop=True), first, last)


def sample_positions(total: int, rows: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted positions of a seeded sample of ``rows`` of ``total`` (None: keep every row)."""
    if rows is None or total <= rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))


def _within_budget(
    parquet: list[Path],
    info: LoadInfo,
    columns: Sequence[str] | None,
    float32_features: bool,
    sample_rows: int | None,
    run_all: RunAll,
) -> pd.DataFrame:
    """The kept sessions of ``parquet`` within ``info``'s caps (the budget applied is set in
    ``info``): stores read by partition, single files read whole."""
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
    budget = product_budget(info.max_rows_per_product, info.max_rows, len(days))
    info.product_budget = budget
    kept = {
        (product, date): span
        for product, counts in sorted(days.items())
        for date, span in pick_sessions(counts, budget).items()
    }
    # the kept rows in order are the sessions one after the other: the sample is drawn on them
    lengths = np.array([stop - start for start, stop in kept.values()], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    picked = sample_positions(int(bounds[-1]), sample_rows)
    reads = []
    for number, ((product, date), (start, stop)) in enumerate(kept.items()):
        keep = None
        if picked is not None:
            low, high = np.searchsorted(picked, bounds[number : number + 2])
            keep = picked[low:high] - bounds[number]
        holding = zip(stores, store_keys, strict=True)
        in_files = file_groups.get((product, date))
        reads.append(
            DayRead(
                product,
                date,
                stores=tuple(str(store) for store, keys in holding if (product, date) in keys),
                file_rows=None if in_files is None else files.iloc[in_files],
                start=start,
                stop=stop,
                columns=None if columns is None else tuple(columns),
                float32_features=float32_features,
                keep=keep,
            )
        )
    del files
    results = run_all(read_day, reads)
    empty = load_dataset([])
    frame = pd.concat(
        [r.frame for r in results] or [empty if columns is None else empty[list(columns)]],
        ignore_index=True,
    )
    firsts = [r.first for r in results if r.first is not None]
    lasts = [r.last for r in results if r.last is not None]
    info.start = min(firsts).isoformat() if firsts else None
    info.end = max(lasts).isoformat() if lasts else None
    del results  # (product, date) order, each day in time order: sorted by product and time
    info.rows_available = sum(sizes.values())
    info.rows_used = int(bounds[-1])
    info.days_available = {p: len(counts) for p, counts in sorted(days.items())}
    info.days_used = dict(sorted(Counter(p for p, _ in kept).items()))
    if info.rows_used < info.rows_available:
        log.info(
            "row budget %d per product (caps: %s per product, %s in all): %d of %d rows, "
            "sessions of %s of %s days",
            budget,
            info.max_rows_per_product,
            info.max_rows,
            info.rows_used,
            info.rows_available,
            info.days_used,
            info.days_available,
        )
    return frame
