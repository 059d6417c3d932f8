"""The feature store on disk: Parquet files, or a directory partitioned by product and date.

Writes never leave a half-written or emptied store behind: every file is written under a hidden
temporary name (readers skip names starting with ``.``) and renamed into place. A single
``.parquet`` file is replaced whole. A partitioned store is merged by record id: a (product, date)
partition that gets new rows keeps its other rows, minus those whose ``record_id`` (the tick a
row was computed at) or second (``ts``) the new rows carry, so backfilling a recording again
replaces its rows and another recording of the same day adds its own. Writers of one store take
turns (a lock file).
"""

from __future__ import annotations

import fcntl
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

_PARTITIONING = ds.partitioning(
    pa.schema([("product_id", pa.string()), ("date", pa.string())]), flavor="hive"
)
_PART_SCHEMA = SCHEMA.remove(SCHEMA.get_field_index("product_id"))  # stored in the path
_PART_FILE = "part-0.parquet"
_LOCK = ".write.lock"


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
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / _LOCK).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_dataset(frame: pd.DataFrame, out: str | Path) -> None:
    """A single file for ``*.parquet`` (replaced), else merged into a hive data set by
    product_id and date (module docstring)."""
    out = Path(out)
    table = pa.Table.from_pandas(frame[list(COLUMNS)], schema=SCHEMA, preserve_index=False)
    if out.suffix == ".parquet":
        _write_file(table, out)
        return
    for product in pc.unique(table["product_id"]).to_pylist():
        check_product_id(product)  # it names a folder: the ticks' rule keeps it a safe name
    dates = pc.strftime(table["ts"], format="%Y-%m-%d")
    table = table.append_column("date", dates)
    with _locked(out):
        incoming = _temporary(out, "incoming")
        try:
            # pyarrow lays the new rows out by partition; each is then merged into place
            ds.write_dataset(
                table,
                incoming,
                format="parquet",
                partitioning=_PARTITIONING,
                basename_template="part-{i}.parquet",
            )
            for new_file in sorted(incoming.rglob("*.parquet")):
                _merge_partition(new_file, out / new_file.parent.relative_to(incoming))
        finally:
            shutil.rmtree(incoming, ignore_errors=True)


def _merge_partition(new_file: Path, folder: Path) -> None:
    """Merge one partition's new rows into ``folder``: new rows win on record id or time."""
    new = pq.read_table(new_file).select(_PART_SCHEMA.names).cast(_PART_SCHEMA)
    stored = _stored_files(folder)
    if stored:
        old = pa.concat_tables(
            pq.read_table(path).select(_PART_SCHEMA.names).cast(_PART_SCHEMA) for path in stored
        ).to_pandas()
        fresh = new.to_pandas()
        keep = ~(old["record_id"].isin(fresh["record_id"]) | old["ts"].isin(fresh["ts"]))
        merged = pd.concat([old[keep], fresh], ignore_index=True)
        merged = merged.sort_values("ts", kind="stable", ignore_index=True)
        new = pa.Table.from_pandas(merged, schema=_PART_SCHEMA, preserve_index=False)
    _write_file(new, folder / _PART_FILE)
    for path in stored:  # files of an older layout: their rows are in the merged file now
        if path.name != _PART_FILE:
            path.unlink()


def _stored_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))


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


def partition_rows(path: str | Path) -> dict[tuple[str, str], int]:
    """Rows of each (product_id, date) partition of a partitioned store, from file metadata."""
    dataset = ds.dataset(Path(path), format="parquet", partitioning=_PARTITIONING)
    sizes: dict[tuple[str, str], int] = {}
    for fragment in dataset.get_fragments():
        keys = ds.get_partition_keys(fragment.partition_expression)
        key = (keys["product_id"], keys["date"])
        sizes[key] = sizes.get(key, 0) + fragment.count_rows()
    return sizes


def load_partition(path: str | Path, product: str, date: str) -> pd.DataFrame:
    """The rows of one (product_id, date) partition of a partitioned store, sorted by ts."""
    folder = Path(path) / f"product_id={product}" / f"date={date}"
    files = _stored_files(folder)
    if not files:
        return load_dataset([])
    table = pa.concat_tables(pq.read_table(f).select(_PART_SCHEMA.names) for f in files)
    table = table.append_column("product_id", pa.array([product] * len(table), pa.string()))
    frame = table.select(list(COLUMNS)).cast(SCHEMA).to_pandas()
    return frame.sort_values("ts", kind="stable", ignore_index=True)
