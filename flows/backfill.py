"""Prefect flow ``backfill``: the raw archive (or given recordings) -> Parquet features, labels.

With ``workers`` (or ``CRYPTOVOL_DASK_ADDRESS`` set) the work runs as Prefect tasks on a Dask
task runner: one per 32 recordings scanned, one per (product, day) partition and one per
partition published (:mod:`tasks.stages.backfill_partitions`); otherwise as one task, in one
process.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.dask_runner import dask_task_runner, on_dask, run_as_tasks
from tasks.settings import get_settings
from tasks.stages.backfill import admitted_inputs, run_backfill


@task(name="check-contracts-and-backfill")
def backfill_task(inputs: list[str] | None, out: str | None) -> dict:
    return run_backfill(get_settings(), inputs, out).as_dict()


@task(name="check-contracts")
def admit_task(inputs: list[str] | None) -> list[str]:
    return admitted_inputs(get_settings(), inputs)


@flow(name="backfill-partitions")
def backfill_partitions(inputs: list[str], out: str) -> dict:
    from tasks.stages.backfill_partitions import backfill_partitioned

    return backfill_partitioned(inputs, out, run_all=run_as_tasks).as_dict()


@flow(name="backfill")
def backfill(
    inputs: list[str] | None = None, out: str | None = None, workers: int | None = None
) -> dict:
    """Backfill ``inputs`` (default: the raw archive) into ``out`` (default: the feature store).

    Recordings that break the raw contract are set aside in the quarantine folder first.
    """
    settings = get_settings()
    if on_dask(settings, workers):
        admitted = admit_task(inputs)
        target = str(out or settings.feature_store_dir)
        runner = dask_task_runner(settings, workers)
        stats = backfill_partitions.with_options(task_runner=runner)(admitted, target)
    else:
        stats = backfill_task(inputs, out)  # raises when no recording passes or no row comes out
    get_run_logger().info("backfill summary: %s", stats)
    return stats
