"""The service follows the registry: ``cryptovol promote`` and ``cryptovol rollback`` under
concurrent load switch what it serves within the poll interval without one failed request, and a
registry that stops answering leaves it serving the loaded model, saying so."""

from __future__ import annotations

import subprocess

import pytest
from serving_support import POLL_S, Load, get, metrics, sample, tool, wait_for

from tasks.stack.servers import PROJECT_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cryptovol(serving_stack, *args: str) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "MLFLOW_TRACKING_URI": serving_stack.registry.url,
        "CRYPTOVOL_DATA_DIR": str(serving_stack.root / "data"),
    }
    proc = subprocess.run(
        [tool("cryptovol"), *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def served_version(server) -> str:
    return get(server, "/version").json()["version"]


def test_promote_and_rollback_commands_under_load(bento, serving_stack):
    first, second = serving_stack.versions
    assert served_version(bento) == first
    with Load(bento.url) as load:
        wait_for(lambda: load.served() > 20, 30)
        cryptovol(serving_stack, "promote", second, "--force", "--why", "serving test")
        promoted = wait_for(lambda: served_version(bento) == second, POLL_S + 20)
        cryptovol(serving_stack, "rollback", "--why", "serving test")
        rolled_back = wait_for(lambda: served_version(bento) == first, POLL_S + 20)
        served = load.served()
        wait_for(lambda: load.served() > served + 20, 30)
    assert promoted and rolled_back
    assert load.errors == [] and set(load.statuses) == {200}, (load.statuses, load.errors[:3])
    assert {first, second} <= set(load.versions) and load.versions[-1] == first


def test_registry_stopped_while_serving(bento, serving_stack):
    registry = serving_stack.registry
    first = served_version(bento)

    def health_when(reachable: bool):
        health = get(bento, "/health").json()
        return health if health["registry_reachable"] is reachable else None

    with Load(bento.url) as load:
        wait_for(lambda: load.served() > 20, 30)
        registry.stop()
        try:
            down = wait_for(lambda: health_when(False), POLL_S + 30)
            assert down is not None, "the service never noticed the registry was gone"
            assert down["status"] == "degraded" and down["model_loaded"]
            assert down["version"] == first and "cannot reach" in down["last_error"]
            assert down["registry_check_failures"] >= 1
            served = load.served()
            assert wait_for(lambda: load.served() > served + 50, 30), "stopped serving"
            assert wait_for(
                lambda: get(bento, "/health").json()["registry_check_failures"] >= 2, 30
            )
            seen = metrics(bento)
            assert sample(seen, "cryptovol_service_registry_up", variant="ml") == 0.0
            assert (
                sample(seen, "cryptovol_service_registry_check_failures_total", variant="ml") >= 2
            )
            assert sample(seen, "cryptovol_service_registry_check_age_seconds", variant="ml") > 0
        finally:
            registry.start()
        back = wait_for(lambda: health_when(True), POLL_S + 30)
    assert back is not None and back["status"] == "healthy" and back["version"] == first
    assert load.errors == [] and set(load.statuses) == {200}, (load.statuses, load.errors[:3])
