"""Prefect flow ``train``: admit the data, train against the baselines, register a challenger."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from tasks.core.training import TrainConfig
from tasks.settings import get_settings
from tasks.stages.train import train_and_register


@task(name="check-contracts-train-and-register")
def train_task(paths: list[str], config: TrainConfig) -> dict:
    return train_and_register(get_settings(), paths, config)


@flow(name="train")
def train(
    data: list[str] | None = None,
    label_mode: str = TrainConfig.label_mode,
    quantile: float = TrainConfig.quantile,
    k: float = TrainConfig.k,
    shuffle_labels: bool = TrainConfig.shuffle_labels,
) -> dict:
    """Train on ``data`` (default: the feature store) and register the result as challenger.

    Inputs that break their data contract are set aside in the quarantine folder, never trained
    on. ``shuffle_labels`` trains a deliberately degraded model: a drill that the gates refuse it.
    """
    paths = data or [str(get_settings().feature_store_dir)]
    config = TrainConfig(
        label_mode=label_mode, quantile=quantile, k=k, shuffle_labels=shuffle_labels
    )
    result = train_task(paths, config)
    get_run_logger().info(
        "registered version %s as challenger: %s", result["version"], result.get("metrics")
    )
    return result
