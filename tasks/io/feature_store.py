"""The feature store on disk: Parquet files, or a directory partitioned by product and date.

Writes never leave a half-written or emptied store behind: every file is written under a hidden
temporary name (readers skip names starting with ``.``) and renamed into place. A single
``.parquet`` file is replaced whole. A partitioned store is merged by record id: a (product, date)
partition that gets new rows keeps its other rows, minus those whose ``record_id`` (the tick a
row was computed at) or second (``ts``) the new rows carry, so backfilling a recording again
replaces its rows and another recording of the same day adds its own. Writers of one store take
turns (a lock file).

A run's partitions land together or not at all. Every merged partition is first staged in a
hidden folder (by this process, or by the workers of a partitioned backfill while the run's
owner holds the lock: :func:`store_run`, :func:`stage_partition`); only when all of them are
written does the run write its journal
(``.commit.json``: which staged file replaces which partition), the commit point, and then move
them into place. A run that fails before its journal leaves the store as it was (its staging is
removed, now or by the next writer); one interrupted after it is finished by the next writer or
reader, which replays the journal's moves. Readers hold the lock shared, so they never see half
a run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.dataset import COLUMNS, SCHEMA
from tasks.core.messages import check_product_id
from tasks.io.files import writing

_PARTITIONING = ds.partitioning(
    pa.schema([("product_id", pa.string()), ("date", pa.string())]), flavor="hive"
)
_PART_SCHEMA = SCHEMA.remove(SCHEMA.get_field_index("product_id"))  # stored in the path
_PART_FILE = "part-0.parquet"
_LOCK = ".write.lock"
_JOURNAL = ".commit.json"


def _temporary(folder: Path, name: str) -> Path:
    return folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"


def _write_file(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` by way of a hidden temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path.parent, path.name)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _locked(folder: Path, *, shared: bool = False) -> Iterator[None]:
    """The store's lock: exclusive for a writer, shared for a reader (who only needs the lock
    file to exist: a reader never creates it)."""
    if shared:
        handle = (folder / _LOCK).open("r")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / _LOCK).open("a")
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class NotADataset(ValueError):
    """An input is not a Parquet file or data set of feature rows."""


def write_dataset(frame: pd.DataFrame, out: str | Path) -> None:
    """A single file for ``*.parquet`` (replaced), else merged into a hive data set by
    product_id and date, every partition of the run or none (module docstring).

    Raises :class:`~tasks.io.files.WriteError` naming ``out`` when it cannot be written (a full
    disk, a read-only folder, a file in the way); the store is then as it was.
    """
    out = Path(out)
    if out.suffix == ".parquet":
        with writing(out):
            _write_file(_table(frame), out)
        return
    table = _table(frame)
    with store_run(out) as run:
        run.commit([stage_partition(rows, out, run.staging) for rows in _by_partition(table)])


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame[list(COLUMNS)], schema=SCHEMA, preserve_index=False)


def _days(table: pa.Table) -> np.ndarray:
    """The UTC date of each row, as ``datetime64[D]``."""
    return table["ts"].to_numpy().astype("datetime64[D]")


def _by_partition(table: pa.Table) -> Iterator[pa.Table]:
    """The rows of each (product_id, date) of ``table``, in their order, partition by partition."""
    keys = pd.DataFrame(
        {
            "product": table["product_id"].to_numpy(zero_copy_only=False),
            "date": _days(table),
        }
    )
    for _, positions in sorted(keys.groupby(["product", "date"]).indices.items()):
        yield table.take(positions)


@dataclass(frozen=True)
class StagedPartition:
    """One partition's merged rows, staged for a run (paths relative to the store): the file
    that replaces ``part-0.parquet`` and the stored files of an older layout it also replaces."""

    staged: str
    final: str
    removals: tuple[str, ...] = ()


class StoreRun:
    """A run into a partitioned store, under way: the store's lock is held and
    :func:`stage_partition` fills :attr:`staging`, in this process or in any other that sees the
    store (the workers of a partitioned backfill); :meth:`commit` lands every staged partition."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.staging = str(_temporary(out, "staging"))
        self.committed = False

    def commit(self, staged: Iterable[StagedPartition]) -> None:
        """Write the journal (the commit point), then move the staged files into place."""
        staged = list(staged)
        moves = [(part.staged, part.final) for part in staged]
        removals = [path for part in staged for path in part.removals]
        _write_journal(self.out, {"moves": moves, "remove": removals})
        self.committed = True
        _finish_interrupted(self.out)


@contextmanager
def store_run(out: str | Path) -> Iterator[StoreRun]:
    """A run into the partitioned store ``out``: every partition staged in it lands at its
    :meth:`StoreRun.commit`, or none does (an error, or no commit, removes the staging).
    :class:`~tasks.io.files.WriteError` names ``out`` when it cannot be written."""
    out = Path(out)
    with writing(out), _locked(out):
        _finish_interrupted(out)
        run = StoreRun(out)
        try:
            yield run
        finally:
            if not run.committed:
                shutil.rmtree(run.staging, ignore_errors=True)


def stage_partition(rows: pa.Table, out: str | Path, staging: str | Path) -> StagedPartition:
    """Stage in ``staging`` (a :class:`StoreRun`'s) the merge of ``rows``, feature rows of one
    product and date, into the stored rows of their partition: new rows win on record id or
    second. Takes no lock: the run's owner holds the store's."""
    products = pc.unique(rows["product_id"]).to_pylist()
    days = _days(rows)
    dates = sorted({str(days.min()), str(days.max())}) if len(days) else []
    if len(products) != 1 or len(dates) != 1:
        raise ValueError(f"rows of one product and date expected, not {products} on {dates}")
    check_product_id(products[0])  # it names a folder: the ticks' rule keeps it safe
    out = Path(out)
    partition = Path(f"product_id={products[0]}") / f"date={dates[0]}"
    new = rows.select(_PART_SCHEMA.names).cast(_PART_SCHEMA)
    stored = _stored_files(out / partition)
    if stored:
        old = pa.concat_tables(
            pq.read_table(path).select(_PART_SCHEMA.names).cast(_PART_SCHEMA) for path in stored
        ).to_pandas()
        fresh = new.to_pandas()
        keep = ~(old["record_id"].isin(fresh["record_id"]) | old["ts"].isin(fresh["ts"]))
        merged = pd.concat([old[keep], fresh], ignore_index=True)
        merged = merged.sort_values("ts", kind="stable", ignore_index=True)
        new = pa.Table.from_pandas(merged, schema=_PART_SCHEMA, preserve_index=False)
    staged = Path(staging) / "merged" / partition / _PART_FILE
    staged.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(new, staged)
    return StagedPartition(
        staged=_relative(staged, out),
        final=(partition / _PART_FILE).as_posix(),
        # files of an older layout: their rows are in the merged file now
        removals=tuple(_relative(path, out) for path in stored if path.name != _PART_FILE),
    )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _write_journal(out: Path, journal: dict) -> None:
    """Write the run's journal whole (temporary file, fsync, rename): the commit point."""
    tmp = _temporary(out, _JOURNAL)
    try:
        with tmp.open("w") as fh:
            json.dump(journal, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out / _JOURNAL)
    finally:
        tmp.unlink(missing_ok=True)


def _finish_interrupted(out: Path) -> None:
    """Finish a committed run (replay its journal's moves) and drop any uncommitted staging.

    Called with the lock held exclusively. Every step can be repeated, so a run interrupted
    while finishing another one is finished in turn by the next.
    """
    journal_path = out / _JOURNAL
    if journal_path.exists():
        journal = json.loads(journal_path.read_text())
        for staged, final in journal["moves"]:
            if (out / staged).exists():
                (out / final).parent.mkdir(parents=True, exist_ok=True)
                os.replace(out / staged, out / final)
        for stale in journal["remove"]:
            (out / stale).unlink(missing_ok=True)
        journal_path.unlink()
    for leftover in out.glob(".*.tmp"):  # staging and journals of runs that did not commit
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _stored_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))


def load_dataset(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """A backfill output (files or partitioned directories), sorted by product_id and ts;
    :class:`NotADataset` names an input that is not one."""
    if isinstance(paths, str | Path):
        paths = [paths]
    tables = []
    for path in map(Path, paths):
        try:
            table = _read_store(path) if path.is_dir() else pq.read_table(path)
            tables.append(table.select(list(COLUMNS)).cast(SCHEMA))
        except (pa.ArrowException, KeyError) as exc:  # ArrowInvalid, a column missing...
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise NotADataset(f"{path}: not a Parquet data set of feature rows ({detail})") from exc
    if not tables:
        return SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables).to_pandas()
    return frame.sort_values(["product_id", "ts"], kind="stable", ignore_index=True)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A partitioned store as of its last whole run, while inside: an interrupted commit is
    finished first, and the lock is held shared so no run lands halfway through the read."""
    if not (path / _LOCK).exists():  # never written by write_dataset: nothing to wait for
        yield
        return
    if (path / _JOURNAL).exists():
        with _locked(path):
            _finish_interrupted(path)
    with _locked(path, shared=True):
        yield


def _read_store(path: Path) -> pa.Table:
    with _reading(path):
        return ds.dataset(path, format="parquet", partitioning=_PARTITIONING).to_table()


def partition_rows(path: str | Path) -> dict[tuple[str, str], int]:
    """Rows of each (product_id, date) partition of a partitioned store, from file metadata."""
    sizes: dict[tuple[str, str], int] = {}
    with _reading(Path(path)):
        dataset = ds.dataset(Path(path), format="parquet", partitioning=_PARTITIONING)
        for fragment in dataset.get_fragments():
            keys = ds.get_partition_keys(fragment.partition_expression)
            key = (keys["product_id"], keys["date"])
            sizes[key] = sizes.get(key, 0) + fragment.count_rows()
    return sizes


def load_partition(path: str | Path, product: str, date: str) -> pd.DataFrame:
    """The rows of one (product_id, date) partition of a partitioned store, sorted by ts."""
    folder = Path(path) / f"product_id={product}" / f"date={date}"
    with _reading(Path(path)):
        files = _stored_files(folder)
        if not files:
            return load_dataset([])
        table = pa.concat_tables(pq.read_table(f).select(_PART_SCHEMA.names) for f in files)
    table = table.append_column("product_id", pa.array([product] * len(table), pa.string()))
    frame = table.select(list(COLUMNS)).cast(SCHEMA).to_pandas()
    return frame.sort_values("ts", kind="stable", ignore_index=True)
