"""Prefect flow ``monitor``: drift of the latest features against the champion's training sample,
live model quality, figures to the Pushgateway, and retraining when drift lasts or the champion
falls below persistence (train, validate and promote through their deployments)."""

from __future__ import annotations

from functools import partial

from prefect import flow, get_run_logger, task

from flows.dask_runner import dask_task_runner, on_dask, run_as_tasks
from monitoring.check import run_check
from monitoring.retrain import start_retraining
from tasks.io.dask_cluster import RunAll, run_in_process
from tasks.settings import get_settings


def _check(
    minutes: float | None,
    current: list[str] | None,
    retrain: bool,
    retrain_data: list[str] | None,
    run_all: RunAll = run_in_process,
) -> dict:
    settings = get_settings()
    retrainer = partial(start_retraining, settings, data=retrain_data) if retrain else None
    return run_check(
        settings, current=current, minutes=minutes, retrain=retrainer, run_all=run_all
    ).to_dict()


@task(name="check-drift-and-live-quality")
def check_task(
    minutes: float | None,
    current: list[str] | None,
    retrain: bool,
    retrain_data: list[str] | None,
) -> dict:
    return _check(minutes, current, retrain, retrain_data)


@flow(name="check-drift-by-partition")
def check_by_partition(
    minutes: float | None,
    current: list[str],
    retrain: bool,
    retrain_data: list[str] | None,
) -> dict:
    """The check with the current data set read day by day as tasks of the flow's runner."""
    return _check(minutes, current, retrain, retrain_data, run_all=run_as_tasks)


@flow(name="monitor")
def monitor(
    minutes: float | None = None,
    current: list[str] | None = None,
    retrain: bool = True,
    retrain_data: list[str] | None = None,
    workers: int | None = None,
) -> dict:
    """Judge the last ``minutes`` of ticks.features (default CRYPTOVOL_MONITOR_MINUTES), or the
    ``current`` data set, against the champion; retrain when due unless ``retrain`` is false.
    ``retrain_data`` is what a retraining trains on (default: the feature store, as ``train``).
    With ``workers`` (or CRYPTOVOL_DASK_ADDRESS set) the ``current`` data set is read by
    (product, day) partition as tasks on a Dask task runner."""
    settings = get_settings()
    if current and on_dask(settings, workers):
        runner = dask_task_runner(settings, workers)
        by_partition = check_by_partition.with_options(task_runner=runner)
        result = by_partition(minutes, current, retrain, retrain_data)
    else:
        result = check_task(minutes, current, retrain, retrain_data)
    get_run_logger().info(
        "drift share %.2f (model v%s); retraining: %s; report %s",
        result["drift"]["share"],
        (result.get("model") or {}).get("version"),
        result["retrain"]["why"],
        result["report_path"],
    )
    return result
