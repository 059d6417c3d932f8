"""The backfill split by (product, day): partitions that run on any worker, rows as one process.

A month of the whole market is too much for one process, and the feature engine keeps state per
product only, so the work splits by product and, within a product, by UTC day:

1. :func:`scan_file` reads each recording's time span and products (decompression and two
   regular expressions, no JSON): cheap, so one task scans :data:`SCAN_BATCH` files.
2. :func:`plan_partitions` makes one :class:`Partition` per product and day, with the files that
   hold its ticks from :func:`warmup_s` before midnight to :func:`lookahead_s` after the next one.
   Each file is *counted* (its tickers and bad input, in the stats) by one partition only.
3. :func:`backfill_partition` feeds its product's ticks of that span, in the order replay
   publishes them, through :class:`FeatureEngine` and :func:`batch_frame`, exactly as
   :func:`tasks.stages.backfill.backfill` does, keeps the rows of its own day and stages them in
   a Parquet file of its own (written whole, then renamed).
4. :func:`publish` numbers the label segments across days (a partition knows its own breaks,
   not how many came before: a running sum does); each partition's rows are renumbered and
   merged into the store's by a task of their own (:func:`place_partition`), and the run
   commits them together: all of them land or none (:func:`tasks.io.feature_store.store_run`).

Why the rows are the same as one process's: the warm-up is :func:`restart_lookback_s` (after
which an engine started mid-stream gives bit-identical rows) plus the trailing label window; the
look-ahead covers the forward label window and the gap that may end it. A test compares the two.
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.core.dataset import FWD_COLUMN, SCHEMA, batch_frame
from tasks.core.features import (
    OUTCOMES,
    EngineConfig,
    EngineStats,
    FeatureEngine,
    restart_lookback_s,
)
from tasks.core.labels import HORIZON_S, LABEL_MAX_GAP_S, TRAILING_S
from tasks.core.timeutil import TimestampError, format_ts, parse_ts
from tasks.io.dask_cluster import RunAll, dask_client, run_in_process, run_on
from tasks.io.feature_store import StagedPartition, stage_partition, store_run, write_dataset
from tasks.io.recordings import expand_inputs, open_binary
from tasks.settings import Settings
from tasks.stages.backfill import BackfillStats, NoRows, admitted_inputs, load_tick_columns

DAY_S = 86_400
SPAN_MARGIN_S = 300.0  # a file's ticks may lie this far outside its first and last timestamps
_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"([^"]{10,40})"')
_PRODUCT = re.compile(rb'"product_id"\s*:\s*"([^"\\]{1,64})"')
_ENDS = 64  # timestamps read at each end of a file for its span
SCAN_BATCH = 32  # files a scan task reads: 0.2-0.5 s of work, well past a task's overhead
_REPORTED = 5


def warmup_s(config: EngineConfig) -> float:
    """Event time before midnight a partition feeds the engine and the label grid."""
    return restart_lookback_s(config) + TRAILING_S + LABEL_MAX_GAP_S + 2.0


def lookahead_s(config: EngineConfig) -> float:
    """Event time after the next midnight a partition reads, for the forward labels."""
    return HORIZON_S + LABEL_MAX_GAP_S + 2.0 * config.late_tolerance_s + 2.0


@dataclass(frozen=True)
class FileSpan:
    path: str
    first: float  # epoch seconds of the earliest of its first and last timestamps; NaN: none
    last: float
    products: tuple[str, ...]


@dataclass(frozen=True)
class Partition:
    product: str
    day: int  # days since the epoch (UTC)
    files: tuple[str, ...]  # in the order of the whole input, so merges break ties alike
    counted: tuple[str, ...]  # file names whose tickers and bad input this partition counts

    @property
    def date(self) -> str:
        return format_ts(self.day * DAY_S)[:10]


@dataclass
class PartitionResult:
    product: str
    day: int
    staged: str | None  # the Parquet file of the day's rows; None when it has none
    rows: int
    breaks_before_day: int  # label-segment breaks before midnight in what the partition saw
    breaks_in_day: int  # breaks whose later tick lies in the day
    accepted_in_day: int  # accepted ticks with a time in the day
    first_in_day: bool  # no accepted tick before midnight: the first one follows a longer gap
    start: str | None = None  # first and last second with a row
    end: str | None = None
    cpu_s: float = 0.0  # CPU time the partition took in its worker
    stats: BackfillStats = field(default_factory=BackfillStats)


def scan_file(path: str) -> FileSpan:
    """Time span and products of one recording, read without parsing JSON."""
    chunks = []
    try:
        with open_binary(Path(path)) as fh:
            while chunk := fh.read(1 << 20):
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error):
        pass  # a damaged tail: what was read still places the file; the parse reports the rest
    data = b"".join(chunks)
    times = []
    for raw in _end_stamps(data):
        try:
            times.append(parse_ts(raw.decode("ascii", errors="replace")))
        except TimestampError:
            continue
    products = tuple(sorted({p.decode("utf-8", errors="replace") for p in _PRODUCT.findall(data)}))
    if not times:
        return FileSpan(path, math.nan, math.nan, products)
    return FileSpan(path, min(times), max(times), products)


def _end_stamps(data: bytes) -> list[bytes]:
    """The first and last :data:`_ENDS` timestamps of ``data`` (all of them when fewer), found
    without searching the middle: the tail is searched in ever larger pieces."""
    first = [m.group(1) for m in itertools.islice(_TIMESTAMP.finditer(data), _ENDS)]
    if len(first) < _ENDS:
        return first
    size = 1 << 16
    while True:
        start = max(0, len(data) - size)
        last = [m.group(1) for m in _TIMESTAMP.finditer(data, start)][-_ENDS:]
        if len(last) == _ENDS or start == 0:
            return first + last
        size *= 4


def scan_files(paths: Sequence[str]) -> list[FileSpan]:
    return [scan_file(path) for path in paths]


def plan_partitions(spans: Sequence[FileSpan], config: EngineConfig) -> list[Partition]:
    """One partition per (product, day) that any file may hold ticks of, sorted."""
    before, after = warmup_s(config), lookahead_s(config)
    placed = [s for s in spans if s.products and not math.isnan(s.first)]
    days: set[tuple[str, int]] = set()
    for span in placed:
        first = math.floor((span.first - SPAN_MARGIN_S) / DAY_S)
        last = math.floor((span.last + SPAN_MARGIN_S) / DAY_S)
        days.update((p, d) for p in span.products for d in range(first, last + 1))
    owner = {  # the partition that counts a file: its first product, the day of its first tick
        span.path: (span.products[0], math.floor(span.first / DAY_S)) for span in placed
    }
    keys = sorted(days)
    unplaced = [s.path for s in spans if s.path not in owner]  # no tick: its bad lines only
    if keys and unplaced:
        for path in unplaced:
            owner[path] = keys[0]
    partitions = []
    for product, day in keys:
        start, end = day * DAY_S - before - SPAN_MARGIN_S, (day + 1) * DAY_S + after + SPAN_MARGIN_S
        files = tuple(
            s.path
            for s in spans
            if owner.get(s.path) == (product, day)
            or (product in s.products and s.first <= end and s.last >= start)
        )
        counted = tuple(Path(p).name for p in files if owner.get(p) == (product, day))
        partitions.append(Partition(product, day, files, counted))
    return partitions


def _day_counts(ts: np.ndarray, status: np.ndarray, day_start: float, day_end: float):
    """The engine's counts over the ticks (in arrival order) from the first one in the day to
    the first one after it."""
    first = int(np.argmax(ts >= day_start)) if (ts >= day_start).any() else len(ts)
    after = int(np.argmax(ts >= day_end)) if (ts >= day_end).any() else len(ts)
    counts = EngineStats()
    counts.add_outcomes(np.bincount(status[first:after], minlength=len(OUTCOMES)))
    return counts.as_dict()


def backfill_partition(partition: Partition, config: EngineConfig, staging: str) -> PartitionResult:
    """The rows of one product and day (module docstring), staged in ``staging``."""
    cpu_started = time.process_time()
    day_start, day_end = partition.day * DAY_S, (partition.day + 1) * DAY_S
    stats = BackfillStats(files=len(partition.counted))
    ticks = load_tick_columns(map(Path, partition.files), stats, counted=set(partition.counted))
    low, high = day_start - warmup_s(config), day_end + lookahead_s(config)
    product = partition.product
    products = np.asarray(ticks.product_id, dtype=object)
    columns = ticks.select((products == product) & (ticks.ts >= low) & (ticks.ts < high))
    del ticks
    batch = FeatureEngine(config).process_batch(columns)
    frame = batch_frame(columns, batch)
    for name, count in _day_counts(columns.ts, batch.status, day_start, day_end).items():
        setattr(stats, name, count)
    seconds = frame["ts"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    frame = frame[(seconds >= day_start) & (seconds < day_end)].reset_index(drop=True)

    times = batch.ts[batch.taken]  # each accepted tick's time, in processing order
    later = times[1:][np.diff(times) > LABEL_MAX_GAP_S]  # the tick after each break
    in_day = (times >= day_start) & (times < day_end)
    staged = None
    if len(frame):
        folder = Path(staging) / product
        folder.mkdir(parents=True, exist_ok=True)
        staged_path = folder / f"{partition.date}.parquet"
        tmp = folder / f".{partition.date}.{uuid.uuid4().hex[:8]}.tmp"
        pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), tmp)
        tmp.replace(staged_path)
        staged = str(staged_path)
        stats.rows = len(frame)
        stats.labelled_rows = int(frame[FWD_COLUMN].notna().sum())
        stats.start = format_ts(frame["ts"].iloc[0].timestamp())
        stats.end = format_ts(frame["ts"].iloc[-1].timestamp())
    return PartitionResult(
        product=product,
        day=partition.day,
        staged=staged,
        rows=len(frame),
        breaks_before_day=int((later < day_start).sum()),
        breaks_in_day=int(((later >= day_start) & (later < day_end)).sum()),
        accepted_in_day=int(in_day.sum()),
        first_in_day=bool(len(times)) and bool(times[0] >= day_start),
        start=stats.start,
        end=stats.end,
        cpu_s=time.process_time() - cpu_started,
        stats=stats,
    )


def _resumed(results: Iterable[PartitionResult]) -> set[tuple[str, int]]:
    """The partitions whose first tick resumes a product after a gap from an earlier day: one
    run over all days restarts its windows and begins a new label segment there."""
    resumed = set()
    seen: set[str] = set()
    for result in sorted(results, key=lambda r: (r.product, r.day)):
        if result.first_in_day and result.accepted_in_day and result.product in seen:
            resumed.add((result.product, result.day))
        if result.accepted_in_day:
            seen.add(result.product)
    return resumed


def segment_offsets(results: Sequence[PartitionResult]) -> dict[tuple[str, int], int]:
    """What to add to each partition's own label-segment numbers to number them as one run
    over all days does: the breaks of the product's earlier days, minus those the partition saw
    before its midnight, plus one when it resumes after a gap (:func:`_resumed`)."""
    resumed = _resumed(results)
    offsets: dict[tuple[str, int], int] = {}
    earlier: Counter[str] = Counter()
    for result in sorted(results, key=lambda r: (r.product, r.day)):
        key = (result.product, result.day)
        gap = int(key in resumed)
        offsets[key] = earlier[result.product] - result.breaks_before_day + gap
        earlier[result.product] += result.breaks_in_day + gap
    return offsets


@dataclass(frozen=True)
class Placement:
    """A staged partition's rows, to be renumbered by ``segment_offset`` and staged in a store
    run's ``staging``."""

    result: PartitionResult
    segment_offset: int
    out: str
    staging: str


def _renumbered(result: PartitionResult, offset: int) -> pa.Table:
    table = pq.read_table(result.staged)
    segment = table.schema.get_field_index("segment")
    return table.set_column(
        segment, "segment", pc.add(table["segment"], pa.scalar(offset, table["segment"].type))
    )


def place_partition(placement: Placement) -> StagedPartition:
    """One partition's rows, renumbered, merged into the store's (on whichever worker runs it)."""
    rows = _renumbered(placement.result, placement.segment_offset)
    return stage_partition(rows, placement.out, placement.staging)


def publish(results: list[PartitionResult], out: str | Path, run_all: RunAll) -> None:
    """Write the staged partitions into ``out`` (a ``.parquet`` file, or the partitioned store)
    with their segments numbered across days. Into a store, each partition is renumbered and
    merged by its own ``run_all`` task; the run then commits them all at once (every partition
    of the run or none, as one process's run)."""
    offsets = segment_offsets(results)
    staged = sorted((r for r in results if r.staged), key=lambda r: (r.product, r.day))
    if not staged:
        return
    if Path(out).suffix == ".parquet":
        tables = [_renumbered(r, offsets[(r.product, r.day)]) for r in staged]
        write_dataset(pa.concat_tables(tables).to_pandas(), out)
        return
    with store_run(out) as run:
        placements = [
            Placement(r, offsets[(r.product, r.day)], str(out), run.staging) for r in staged
        ]
        run.commit(run_all(place_partition, placements))


def combined_stats(results: list[PartitionResult], files: int, out: str | Path) -> BackfillStats:
    """The partitions' counts as one run's."""
    total = BackfillStats(files=files, out=str(out))
    reasons: Counter[str] = Counter()
    summed = ("ticks", "rejected", "bad_lines", "rows", "labelled_rows", *EngineStats().as_dict())
    for result in sorted(results, key=lambda r: (r.day, r.product)):
        stats = result.stats
        for name in summed:
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        reasons.update(stats.reject_reasons)
        total.first_rejects.extend(stats.first_rejects[: _REPORTED - len(total.first_rejects)])
        total.first_bad_lines.extend(
            stats.first_bad_lines[: _REPORTED - len(total.first_bad_lines)]
        )
    total.reject_reasons = dict(reasons)
    total.gaps_restarted += len(_resumed(results))  # a partition's engine starts there afresh
    with_rows = [r for r in results if r.rows]
    total.products = sorted({r.product for r in with_rows})
    total.start = min((r.start for r in with_rows), default=None)
    total.end = max((r.end for r in with_rows), default=None)
    return total


def backfill_partitioned(
    inputs: Iterable[str | Path],
    out: str | Path,
    config: EngineConfig | None = None,
    run_all: RunAll = run_in_process,
) -> BackfillStats:
    """:func:`tasks.stages.backfill.backfill`, partition by partition through ``run_all``
    (a Dask cluster's map, Prefect tasks on a Dask task runner, or this process)."""
    started = time.perf_counter()
    config = config or EngineConfig()
    paths = [str(p) for p in expand_inputs(inputs)]
    batches = [paths[i : i + SCAN_BATCH] for i in range(0, len(paths), SCAN_BATCH)]
    spans = [span for batch in run_all(scan_files, batches) for span in batch]
    partitions = plan_partitions(spans, config)
    out = Path(out)
    staging = out.parent / f".staging-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        results = run_all(
            partial(backfill_partition, config=config, staging=str(staging)), partitions
        )
        stats = combined_stats(results, len(paths), out)
        if not stats.rows:
            raise NoRows(
                f"no rows from {stats.files} file(s): {stats.ticks} ticker(s), {stats.rejected} "
                f"refused, {stats.bad_lines} bad line(s); {out} left as it was",
                stats,
            )
        publish(results, out, run_all)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stats.seconds = time.perf_counter() - started
    return stats


def run_backfill_partitioned(
    settings: Settings,
    inputs: Iterable[str | Path] | None = None,
    out: str | Path | None = None,
    config: EngineConfig | None = None,
    *,
    check_contracts: bool = True,
    workers: int | None = None,
) -> BackfillStats:
    """The backfill stage on a Dask cluster: :func:`admitted_inputs`, then
    :func:`backfill_partitioned` on the cluster ``settings.dask_address`` names, or on a local
    one of ``workers`` processes (None: one per core)."""
    inputs = admitted_inputs(settings, inputs, check_contracts=check_contracts)
    with dask_client(settings.dask_address, workers) as client:
        return backfill_partitioned(
            inputs, out or settings.feature_store_dir, config, run_on(client)
        )
