"""The ``backfill`` stage: recordings or the raw archive -> features and labels in Parquet.

Every tick goes through :class:`FeatureEngine` exactly as in the stream, and in the
stream's order: the files merged by receive time, each in its own line order
(:func:`tasks.io.recordings.read_tick_columns`: what replay publishes), so late, duplicate and
misstamped ticks meet the same rules in both paths. It becomes the data set of
:mod:`tasks.core.dataset`. :func:`run_backfill` is what every entry point calls: the raw contract
first (a failing recording is set aside), then :func:`backfill`.

Output (:func:`tasks.io.feature_store.write_dataset`): a ``.parquet`` path is replaced, atomically;
any other path is a directory data set partitioned by ``product_id`` and ``date``, into which the
rows are merged by record id (rows of other recordings of the same day stay), every partition of
the run or none. A run that yields no row writes nothing and raises :class:`NoRows`; one that
cannot write raises :class:`~tasks.io.files.WriteError` naming the output, which is left as it
was.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Container, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks.core.dataset import FWD_COLUMN, engine_rows, feature_frame
from tasks.core.features import FEATURE_SET_VERSION, EngineConfig, FeatureEngine, FeatureRow
from tasks.core.messages import Tick, TickColumns
from tasks.core.timeutil import format_ts
from tasks.io.feature_store import write_dataset
from tasks.io.recordings import expand_inputs, read_tick_columns
from tasks.settings import Settings

log = logging.getLogger(__name__)

_REPORTED = 5  # bad lines and rejected ticks quoted in the stats


class NoRows(ValueError):
    """The inputs gave no row (no usable tick): nothing was written."""

    def __init__(self, message: str, stats: BackfillStats) -> None:
        super().__init__(message)
        self.stats = stats


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
    sequence_jumps: int = 0  # ticks refused for a sequence number far ahead of their source's
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


def load_tick_columns(
    paths: Iterable[Path],
    stats: BackfillStats | None = None,
    counted: Container[str] | None = None,
) -> TickColumns:
    """Valid ticks of the recordings in the order replay publishes them, as columns; bad input
    counted.

    ``counted``: the file names whose tickers and bad input go into ``stats`` (default: all), so
    partitions that read the same file count it once. Read whole files at a time
    (:func:`tasks.io.recordings.read_tick_columns`, the rules of ``to_tick``).
    """
    stats = stats if stats is not None else BackfillStats()
    reasons: Counter[str] = Counter(stats.reject_reasons)
    read = read_tick_columns(paths)
    for name, raw_ticks in read.raw_ticks.items():
        if counted is None or name in counted:
            stats.ticks += raw_ticks
    for name, record_id, exc in read.refused:
        if counted is not None and name not in counted:
            continue
        stats.rejected += 1
        reasons[str(exc).split(":", 1)[0]] += 1
        if len(stats.first_rejects) < _REPORTED:
            stats.first_rejects.append(f"{record_id}: {exc}")
    for item in read.bad_lines:
        if counted is not None and Path(item.path).name not in counted:
            continue
        stats.bad_lines += 1
        if len(stats.first_bad_lines) < _REPORTED:
            stats.first_bad_lines.append(item.describe())
    stats.reject_reasons = dict(reasons)
    return read.columns


def load_ticks(
    paths: Iterable[Path],
    stats: BackfillStats | None = None,
    counted: Container[str] | None = None,
) -> list[Tick]:
    """:func:`load_tick_columns` as :class:`Tick` objects."""
    return load_tick_columns(paths, stats, counted).to_ticks()


def batch_features(
    inputs: Iterable[str | Path], config: EngineConfig | None = None
) -> Iterator[FeatureRow]:
    """Every accepted tick's features, in processing order: the batch twin of the stream."""
    engine = FeatureEngine(config)
    for _tick, row in engine_rows(load_ticks(expand_inputs(inputs)), engine):
        yield row


def backfill(
    inputs: Iterable[str | Path], out: str | Path, config: EngineConfig | None = None
) -> BackfillStats:
    """Recordings or archive -> Parquet features and labels; the stats of the run."""
    started = time.perf_counter()
    stats = BackfillStats(out=str(out))
    paths = expand_inputs(inputs)
    stats.files = len(paths)
    ticks = load_tick_columns(paths, stats)
    engine = FeatureEngine(config)
    frame = feature_frame(ticks, engine)
    del ticks
    for name, count in engine.stats.as_dict().items():
        setattr(stats, name, count)
    stats.rows = len(frame)
    stats.labelled_rows = int(frame[FWD_COLUMN].notna().sum())
    stats.products = sorted(frame["product_id"].unique().tolist())
    if not len(frame):
        raise NoRows(
            f"no rows from {stats.files} file(s): {stats.ticks} ticker(s), {stats.rejected} "
            f"refused, {stats.bad_lines} bad line(s); {out} left as it was",
            stats,
        )
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


def admitted_inputs(
    settings: Settings, inputs: Iterable[str | Path] | None = None, *, check_contracts: bool = True
) -> list[str]:
    """``inputs`` (default: the raw archive) that pass the raw contract.

    A recording that breaks the contract is set aside in the quarantine folder with its report;
    raises :class:`data_contracts.gate.NothingAdmitted` when none passes. ``check_contracts=False``
    skips the check (and logs that it did).
    """
    from data_contracts.gate import NothingAdmitted, admit_recordings

    inputs = [str(p) for p in (inputs or [settings.archive_dir])]
    if not check_contracts:
        log.warning("data contracts skipped: backfilling %s unchecked", inputs)
        return inputs
    admitted = admit_recordings(settings, inputs)
    if not admitted:
        raise NothingAdmitted(
            f"no recording in {inputs} passed the raw data contract; "
            f"reports in {settings.quarantine_dir}"
        )
    return admitted


def run_backfill(
    settings: Settings,
    inputs: Iterable[str | Path] | None = None,
    out: str | Path | None = None,
    config: EngineConfig | None = None,
    *,
    check_contracts: bool = True,
) -> BackfillStats:
    """The stage: :func:`admitted_inputs`, then :func:`backfill` into ``out`` (default: the
    feature store). :func:`tasks.stages.backfill_partitions.run_backfill_partitioned` is its twin
    on a Dask cluster."""
    inputs = admitted_inputs(settings, inputs, check_contracts=check_contracts)
    return backfill(inputs, out or settings.feature_store_dir, config)
