"""Prefect flow ``monitor``: drift of the latest features against the champion's training sample,
live model quality, figures to the Pushgateway, and retraining when drift lasts or the champion
falls below persistence (train, validate and promote through their deployments)."""

from __future__ import annotations

from functools import partial

from prefect import flow, get_run_logger, task

from monitoring.check import run_check
from monitoring.retrain import start_retraining
from tasks.settings import get_settings


@task(name="check-drift-and-live-quality")
def check_task(
    minutes: float | None,
    current: list[str] | None,
    retrain: bool,
    retrain_data: list[str] | None,
) -> dict:
    settings = get_settings()
    retrainer = partial(start_retraining, settings, data=retrain_data) if retrain else None
    return run_check(settings, current=current, minutes=minutes, retrain=retrainer).to_dict()


@flow(name="monitor")
def monitor(
    minutes: float | None = None,
    current: list[str] | None = None,
    retrain: bool = True,
    retrain_data: list[str] | None = None,
) -> dict:
    """Judge the last ``minutes`` of ticks.features (default CRYPTOVOL_MONITOR_MINUTES), or the
    ``current`` data set, against the champion; retrain when due unless ``retrain`` is false.
    ``retrain_data`` is what a retraining trains on (default: the feature store, as ``train``)."""
    result = check_task(minutes, current, retrain, retrain_data)
    get_run_logger().info(
        "drift share %.2f (model v%s); retraining: %s; report %s",
        result["drift"]["share"],
        (result.get("model") or {}).get("version"),
        result["retrain"]["why"],
        result["report_path"],
    )
    return result
