"""What the flows that work by partition share: the Dask task runner and the map onto it.

A flow given ``workers`` (or run with ``CRYPTOVOL_DASK_ADDRESS`` set) runs its partitions as
Prefect tasks on a ``prefect-dask`` task runner: a local cluster of that many worker processes,
or the running cluster the address names.
"""

from __future__ import annotations

from prefect import task

from tasks.settings import Settings


def on_dask(settings: Settings, workers: int | None) -> bool:
    return bool(workers or settings.dask_address)


def dask_task_runner(settings: Settings, workers: int | None):
    from prefect_dask import DaskTaskRunner

    from tasks.io.dask_cluster import local_cluster_options

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_options(workers))


def run_as_tasks(fn, items) -> list:
    """Run ``fn`` on every item as Prefect tasks on the flow's task runner."""
    name = getattr(fn, "func", fn).__name__.replace("_", "-")
    futures = task(fn, name=name).map(items)
    return [future.result() for future in futures]
