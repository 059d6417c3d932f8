"""The Dask cluster the batch side runs its partitions on.

``CRYPTOVOL_DASK_ADDRESS`` (the settings' ``dask_address``) names a running cluster's scheduler
(``tcp://host:8786``, as ``infra/compose.yaml`` starts one); without it a local cluster of worker
processes is started on loopback, one single-threaded worker per core unless told how many, its
scheduler and dashboard on free ports. The code that runs on it is the same either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# Runs ``fn`` on every item (on a cluster, or in this process) and returns the results in order.
RunAll = Callable[[Callable, Sequence], list]


def run_in_process(fn: Callable, items: Sequence) -> list:
    return [fn(item) for item in items]


def local_cluster_options(workers: int | None) -> dict[str, Any]:
    """Keyword arguments of a ``distributed.LocalCluster`` of ``workers`` processes (None: one
    per core), each with one thread (the work is pure Python: threads would share one GIL)."""
    return {
        "n_workers": workers or os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "scheduler_port": 0,
        "dashboard_address": "127.0.0.1:0",
        "silence_logs": logging.WARNING,
    }


@contextmanager
def dask_client(address: str = "", workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` of the cluster at ``address``, or of a local cluster started
    (and stopped on exit) for the block."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(**local_cluster_options(workers)) as cluster, Client(cluster) as client:
        yield client


def run_on(client: Any) -> Callable[[Callable, Sequence], list]:
    """Run ``fn`` on every item as tasks of ``client``'s cluster; the results in order."""

    def run_all(fn: Callable, items: Sequence) -> list:
        return client.gather(client.map(fn, items, pure=False))

    return run_all


@contextmanager
def partition_runner(address: str = "", workers: int | None = None) -> Iterator[RunAll]:
    """Where partitions run: on the cluster at ``address``, on a local one of ``workers``
    processes, or (neither given) in this process."""
    if not (address or workers):
        yield run_in_process
        return
    with dask_client(address, workers) as client:
        yield run_on(client)
