"""The feature store on disk: Parquet files, or a directory partitioned by product and date.

Writes never leave a half-written or emptied store behind: every file is written under a hidden
temporary name (readers skip names starting with ``.``) and renamed into place. A single
``.parquet`` file is replaced whole. A partitioned store is merged by record id: a (product, date)
partition that gets new rows keeps its other rows, minus those whose ``record_id`` (the tick a
row was computed at) or second (``ts``) the new rows carry, so backfilling a recording again
replaces its rows and another recording of the same day adds its own. Writers of one store take
turns (a lock file).

A run's partitions land together or not at all. Every merged partition is first staged in a
hidden folder; only when all of them are written does the run write its journal
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
from pathlib import Path

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
    with writing(out):
        if out.suffix == ".parquet":
            _write_file(_table(frame), out)
        else:
            _write_store([frame], out)


def write_partitions(frames: Iterable[pd.DataFrame], out: str | Path) -> None:
    """:func:`write_dataset` into a partitioned store for a run whose rows come frame by frame
    (a partitioned backfill): one frame in memory at a time, and still every partition of the
    run or none."""
    out = Path(out)
    with writing(out):
        _write_store(frames, out)


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame[list(COLUMNS)], schema=SCHEMA, preserve_index=False)


def _write_store(frames: Iterable[pd.DataFrame], out: Path) -> None:
    with _locked(out):
        _finish_interrupted(out)
        staging = _temporary(out, "staging")
        committed = False
        try:
            incoming = staging / "incoming"
            # pyarrow lays each frame's rows out by partition; each partition is then merged
            # with the stored rows and staged
            for number, frame in enumerate(frames):
                table = _table(frame)
                for product in pc.unique(table["product_id"]).to_pylist():
                    check_product_id(product)  # it names a folder: the ticks' rule keeps it safe
                table = table.append_column("date", pc.strftime(table["ts"], format="%Y-%m-%d"))
                ds.write_dataset(
                    table,
                    incoming,
                    format="parquet",
                    partitioning=_PARTITIONING,
                    basename_template=f"part-{number}-{{i}}.parquet",
                    existing_data_behavior="overwrite_or_ignore",
                )
            moves: list[tuple[str, str]] = []
            removals: list[str] = []
            folders = sorted({path.parent for path in incoming.rglob("*.parquet")})
            for folder in folders:
                partition = folder.relative_to(incoming)
                staged = staging / "merged" / partition / _PART_FILE
                new_files = sorted(folder.glob("*.parquet"))
                removals += _stage_partition(new_files, out, partition, staged)
                moves.append((_relative(staged, out), (partition / _PART_FILE).as_posix()))
            _write_journal(out, {"moves": moves, "remove": removals})
            committed = True
            _finish_interrupted(out)
        finally:
            if not committed:
                shutil.rmtree(staging, ignore_errors=True)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _stage_partition(new_files: list[Path], out: Path, partition: Path, staged: Path) -> list[str]:
    """Write the merge of one partition's new rows into the stored ones at ``staged`` (new rows
    win on record id or time); the stored files it replaces besides ``part-0.parquet``."""
    new = pa.concat_tables(
        pq.read_table(path).select(_PART_SCHEMA.names).cast(_PART_SCHEMA) for path in new_files
    )
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
    staged.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(new, staged)
    # files of an older layout: their rows are in the merged file now
    return [_relative(path, out) for path in stored if path.name != _PART_FILE]


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
