"""Prefect flow ``train``: admit the data, train against the baselines, register a challenger."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.contracts import admit_data
from tasks.core.training import TrainConfig
from tasks.io.registry import train_and_register
from tasks.settings import get_settings
from tasks.stages.backfill import feature_store


@task(name="train-and-register")
def train_task(paths: list[str], config: TrainConfig) -> dict:
    return train_and_register(get_settings(), paths, config)


@flow(name="train")
def train(
    data: list[str] | None = None,
    label_mode: str = "absolute",
    quantile: float = 0.9,
    k: float = 2.0,
    shuffle_labels: bool = False,
) -> dict:
    """Train on ``data`` (default: the feature store) and register the result as challenger.

    ``shuffle_labels`` trains a deliberately degraded model: a drill that the gates refuse it.
    """
    paths = data or [str(feature_store(get_settings()))]
    admitted = admit_data(paths)
    config = TrainConfig(
        label_mode=label_mode, quantile=quantile, k=k, shuffle_labels=shuffle_labels
    )
    result = train_task(admitted, config)
    get_run_logger().info(
        "registered version %s as challenger: %s", result["version"], result.get("metrics")
    )
    return result
