"""Prefect flow ``backfill``: the raw archive (or given recordings) -> Parquet features, labels."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.contracts import admit_recordings_task
from tasks.settings import get_settings
from tasks.stages import backfill as backfill_tasks


@task(name="backfill-features")
def backfill_task(inputs: list[str], out: str) -> dict:
    return backfill_tasks.backfill(inputs, out).as_dict()


@flow(name="backfill")
def backfill(inputs: list[str] | None = None, out: str | None = None) -> dict:
    """Backfill ``inputs`` (default: the raw archive) into ``out`` (default: the feature store)."""
    settings = get_settings()
    inputs = inputs or [str(settings.archive_dir)]
    out = out or str(backfill_tasks.feature_store(settings))
    admitted = admit_recordings_task(inputs)
    if not admitted:
        raise RuntimeError(f"no recording in {inputs} passed the raw data contract")
    stats = backfill_task(admitted, out)
    get_run_logger().info("backfill summary: %s", stats)
    if not stats["rows"]:
        raise RuntimeError(f"backfill of {inputs} produced no rows")
    return stats
