"""Data for training and evaluation: backfilled Parquet as is, recordings backfilled first.

``--data PATHS`` of ``train``, ``evaluate`` and ``validate`` accept Parquet files or directories
(a backfill's output) and recordings (``*.ndjson[.gz]`` or directories of them). Recordings are
backfilled into a cache keyed by the files' names, sizes and modification times and the feature
set version, so a second run on the same recordings skips the backfill. A cache file is written
under a temporary name and renamed (:mod:`tasks.io.feature_store`): two runs filling it at once,
or a run killed midway, never leave a partial file behind.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.features import FEATURE_SET_VERSION
from tasks.io.feature_store import load_dataset
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


def load_frame(paths: Iterable[str | Path], cache_dir: Path) -> tuple[pd.DataFrame, LoadInfo]:
    """The feature/label frame of every input (Parquet loaded, recordings backfilled, cached)."""
    info = LoadInfo()
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
    frame = load_dataset(parquet)
    info.load_s = time.perf_counter() - started
    return frame, info
