"""Prefect flow ``validate``: challenger and champion on the most recent window neither saw."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from tasks.core.gates import GateConfig
from tasks.settings import get_settings
from tasks.stages.validate import validate_challenger


@task(name="score-and-gate")
def validate_task(paths: list[str], window_s: float | None, gates: dict | None) -> dict:
    config = GateConfig(**gates) if gates else None
    return validate_challenger(
        get_settings(), paths, window_s=window_s, gate_config=config
    ).to_dict()


@flow(name="validate")
def validate(
    data: list[str] | None = None, window_s: float | None = None, gates: dict | None = None
) -> dict:
    """Gate the challenger on ``data`` (default: the feature store); the decision is logged.

    ``gates`` overrides thresholds of :class:`tasks.core.gates.GateConfig`
    (e.g. ``{"margin": 0.05}``).
    """
    paths = data or [str(get_settings().feature_store_dir)]
    outcome = validate_task(paths, window_s, gates)
    get_run_logger().info(
        "challenger v%s: %s (%s)",
        outcome["challenger_version"],
        outcome["decision"],
        outcome["reason"],
    )
    return outcome
