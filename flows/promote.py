"""Prefect flow ``promote``: move ``champion`` to a challenger whose validation passed."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from tasks.io.registry import RegistryError
from tasks.settings import get_settings
from tasks.stages.promote import promote as promote_version


@task(name="move-champion-alias")
def promote_task(version: str | None, force: bool, why: str | None) -> dict:
    return promote_version(get_settings(), version, force=force, who="prefect", why=why).to_dict()


@flow(name="promote")
def promote(version: str | None = None, force: bool = False, why: str | None = None) -> dict:
    """Promote ``version`` (default: the challenger). Without ``force`` its gates must have passed.

    A challenger refused by validation leaves the champion where it is: the run completes and
    says so, since keeping the champion is the intended outcome, not a failure.
    """
    logger = get_run_logger()
    try:
        change = promote_task(version, force, why or "scheduled promotion after validation")
    except RegistryError as exc:
        logger.warning("champion unchanged: %s", exc)
        return {"action": "none", "reason": str(exc)}
    logger.info("champion: v%s (was %s)", change["champion"], change["previous"])
    return change
