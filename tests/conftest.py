"""Shared fixtures: a real embedded broker on a free loopback port, settings pointing at it, and
a small tmpfs for disk-full and read-only faults, and one MLflow server and one Prefect server for
the whole session (see ``session_services``)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from session_services import Registry, SessionServices, start_registry, start_shared_prefect

from tasks.settings import Settings

SHARED_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coinbase-btc-usd-2025-12"
)


@pytest.fixture(scope="session")
def shared_recordings() -> list[Path]:
    """The real Coinbase recordings in ../shared/data, or a skip saying they are absent."""
    files = sorted(SHARED_DATA.glob("*.ndjson.gz")) if SHARED_DATA.is_dir() else []
    if not files:
        pytest.skip(f"real recordings not found at {SHARED_DATA} (../shared/data is absent)")
    return files


@pytest.fixture(scope="session")
def broker_address(tmp_path_factory) -> str:
    """host:port of a freshly started embedded broker (or KAFKA_TEST_BOOTSTRAP if set)."""
    external = os.environ.get("KAFKA_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    from tasks.io.broker import free_port, start_broker, stop_broker

    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    proc = start_broker("127.0.0.1", port, log_path=log)
    yield f"127.0.0.1:{port}"
    stop_broker(proc)


@pytest.fixture
def kafka_settings(broker_address, tmp_path) -> Settings:
    """Settings with unique topic names per test, so tests on one broker never see each other."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=broker_address,
        raw_topic=f"ticks.raw.{suffix}",
        features_topic=f"ticks.features.{suffix}",
        predictions_topic=f"ticks.predictions.{suffix}",
        dlq_topic=f"ticks.raw.dlq.{suffix}",
        data_dir=tmp_path / "data",
    )


class SmallDisk:
    """A 2 MiB tmpfs mounted for one test: a disk that fills up, or turns read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave_bytes: int = 0) -> None:
        """Take all the free space but ``leave_bytes`` (rounded to the 4 KiB block)."""
        with (self.path / ".ballast").open("ab") as ballast:
            ballast.write(b"\0" * max(self.free_bytes() - leave_bytes, 0))

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path) -> SmallDisk:
    """A 2 MiB tmpfs at a fresh folder (the tests run as root), unmounted after the test."""
    path = tmp_path / "small_disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


SESSION_SERVERS = ("mlflow_server", "prefect_server")  # fixture names, as tests ask for them


@pytest.fixture(scope="session", autouse=True)
def session_services(request, tmp_path_factory):
    """Starts, side by side and at once, the shared servers the collected tests will ask for."""
    services = SessionServices(
        {
            "mlflow_server": lambda: start_registry(tmp_path_factory.mktemp("mlflow")),
            "prefect_server": lambda: start_shared_prefect(tmp_path_factory.mktemp("prefect")),
        }
    )
    wanted = {n for item in request.session.items for n in item.fixturenames}
    services.launch(*[name for name in SESSION_SERVERS if name in wanted])
    yield services
    services.stop_all()


@pytest.fixture(scope="session")
def mlflow_server(session_services) -> Registry:
    """The session's MLflow server. Tests isolate by registered model name (which also names
    the experiment) and data folder; one that stops it starts it again."""
    return session_services.get("mlflow_server")


@pytest.fixture(scope="session")
def prefect_server(session_services):
    """The session's Prefect server (``.env``: its API URL and home) with the ``cryptovol``
    work pool. A module starts its own worker on that pool and stops it when done."""
    return session_services.get("prefect_server")
