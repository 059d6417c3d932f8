"""Starting a retraining: ``train``, then ``validate``, then ``promote``.

With a Prefect server configured (``PREFECT_API_URL``) the three run as their deployments
(``train/train``, ``validate/validate``, ``promote/promote``), one after the other, each waited
for, so they show in the Prefect UI beside the scheduled ones. Without one they run in this
process through the same stage functions the flows call. Either way the reason goes with them: the
promotion's ``why`` (kept in the version's tags) and, in process, a ``trigger`` tag on the
training run. A stage that fails ends the retraining there and says so; the champion stays.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.core.gates import GateConfig

log = logging.getLogger("cryptovol.retrain")


def prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def through_deployments(why: str, data: list[str] | None, timeout_s: float = 3600) -> dict:
    """Run the three deployments in turn; their flow run ids and final states."""
    from prefect.deployments import run_deployment

    data_param = {"data": data} if data else {}
    steps = (
        ("train", "train/train", data_param),
        ("validate", "validate/validate", data_param),
        ("promote", "promote/promote", {"why": f"monitor: {why}"}),
    )
    out: dict = {"mode": "deployments", "runs": {}}
    for step, name, parameters in steps:
        run = run_deployment(name, parameters=parameters, timeout=timeout_s)
        out["runs"][step] = {
            "id": str(run.id),
            "state": run.state.type.value if run.state else None,
        }
        if run.state is None or not run.state.is_completed():
            out["stopped"] = f"{name} ended {run.state.type.value if run.state else 'unknown'}"
            log.warning("retraining stopped: %s", out["stopped"])
            break
    return out


def in_process(
    settings: Settings, why: str, data: list[str] | None, gate_config: GateConfig | None = None
) -> dict:
    """The three stages in this process; what each gave, or where it stopped (``gate_config``:
    the validation gates, default the project's)."""
    from tasks.io import registry
    from tasks.io.registry import RegistryError
    from tasks.stages.promote import promote
    from tasks.stages.train import train_and_register
    from tasks.stages.validate import validate_challenger

    paths = data or [str(settings.feature_store_dir)]
    out: dict = {"mode": "in-process", "data": paths}
    try:
        trained = train_and_register(settings, paths)
    except Exception as exc:
        out["stopped"] = f"train failed: {exc}"
        log.warning("retraining stopped: %s", out["stopped"])
        return out
    out["train"] = {"version": trained["version"], "run_id": trained["run_id"]}
    client = registry.connect(settings)
    client.set_tag(trained["run_id"], "trigger", "monitor")
    client.set_tag(trained["run_id"], "trigger_why", why[:5000])
    try:
        outcome = validate_challenger(settings, paths, gate_config=gate_config)
    except Exception as exc:
        out["stopped"] = f"validate failed: {exc}"
        log.warning("retraining stopped: %s", out["stopped"])
        return out
    validated = outcome.to_dict()
    out["validate"] = {"decision": validated["decision"], "reason": validated["reason"]}
    try:
        change = promote(settings, who="monitor", why=f"monitor: {why}")
    except RegistryError as exc:  # refused by its gates: the champion stays, as intended
        out["promote"] = {"action": "none", "reason": str(exc)}
        return out
    out["promote"] = {"champion": change.champion, "previous": change.previous}
    return out


def start_retraining(settings: Settings, why: str, data: list[str] | None = None) -> dict:
    if prefect_server_configured():
        return through_deployments(why, data)
    return in_process(settings, why, data)
