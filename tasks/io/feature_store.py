"""The feature store on disk: Parquet files, or a directory partitioned by product and date."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.dataset import COLUMNS, SCHEMA

_PARTITIONING = ds.partitioning(
    pa.schema([("product_id", pa.string()), ("date", pa.string())]), flavor="hive"
)


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
