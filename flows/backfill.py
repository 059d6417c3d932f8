"""Prefect flow ``backfill``: the raw archive (or given recordings) -> Parquet features, labels."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from tasks.settings import get_settings
from tasks.stages.backfill import run_backfill


@task(name="check-contracts-and-backfill")
def backfill_task(inputs: list[str] | None, out: str | None) -> dict:
    return run_backfill(get_settings(), inputs, out).as_dict()


@flow(name="backfill")
def backfill(inputs: list[str] | None = None, out: str | None = None) -> dict:
    """Backfill ``inputs`` (default: the raw archive) into ``out`` (default: the feature store).

    Recordings that break the raw contract are set aside in the quarantine folder first.
    """
    stats = backfill_task(inputs, out)  # raises when no recording passes or no row comes out
    get_run_logger().info("backfill summary: %s", stats)
    return stats
