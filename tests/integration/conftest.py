"""Session fixtures shared by the serving tests: two registered versions on the session's MLflow
server, one ``bentoml serve`` per variant for the whole session, and a SQLite store for the tests
that need no server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from serving_support import (
    BentoServer,
    serving_env,
    start_bento,
    train_version,
    wait_ready,
)
from session_services import Registry

from tasks.settings import Settings
from tasks.sim.writer import write_recordings
from tasks.stages.promote import promote

SERVICE = "bentos.service:VolatilityService"


@dataclass
class ServingStack:
    registry: Registry
    settings: Settings  # pointing at the registry (tests may move aliases with it)
    recordings: Path
    root: Path
    versions: tuple[str, str]  # v1: the champion at start; v2: trained on shuffled labels


@pytest.fixture(scope="session")
def serving_stack(mlflow_server, tmp_path_factory) -> ServingStack:
    """The served model is the default ``volatility-spike``: no other test registers it on the
    session's server, and the services and commands under test find it without a setting."""
    root = tmp_path_factory.mktemp("serving")
    recordings = root / "recordings"
    write_recordings(recordings, products=("BTC-USD", "ETH-USD"), seed=3, minutes=40)
    settings = mlflow_server.settings(root / "data")
    first = train_version(settings, recordings)
    second = train_version(settings, recordings, shuffle_labels=True)
    promote(settings, first, force=True, who="tests", why="serving fixture")
    return ServingStack(mlflow_server, settings, recordings, root, (first, second))


@pytest.fixture(scope="session")
def sqlite_registry(tmp_path_factory) -> Settings:
    """Settings on a SQLite store (no server) with two versions of the ML model and of the
    baseline; version 1 is the champion. Tests that move the alias put it back."""
    root = tmp_path_factory.mktemp("sqlite-registry")
    write_recordings(root / "recordings", products=("BTC-USD", "ETH-USD"), seed=5, minutes=40)
    settings = Settings(
        data_dir=root / "data", mlflow_tracking_uri=f"sqlite:///{root / 'store' / 'mlflow.db'}"
    )
    first = train_version(settings, root / "recordings")
    train_version(settings, root / "recordings", shuffle_labels=True)
    promote(settings, first, force=True, who="tests")
    return settings


@pytest.fixture(scope="session")
def bento_servers(serving_stack) -> dict[str, BentoServer]:
    """``bentoml serve`` for the ML champion and, beside it, ``MODEL_VARIANT=baseline``
    (started together: each spends most of its start importing)."""
    root, url = serving_stack.root, serving_stack.registry.url
    servers = {
        variant: start_bento(
            SERVICE,
            serving_env(url, root / f"bento-{variant}", MODEL_VARIANT=variant),
            root / f"bento-{variant}.log",
        )
        for variant in ("ml", "baseline")
    }
    try:
        for server in servers.values():
            wait_ready(server)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def bento(bento_servers) -> BentoServer:
    return bento_servers["ml"]
