"""Shared fixtures: a real embedded broker on a free loopback port, settings pointing at it, and
a small tmpfs for disk-full and read-only faults, and one MLflow server and one Prefect server for
the whole session (see ``session_services``).

The suite runs on pytest-xdist workers (``addopts`` in pyproject.toml); the hooks below keep on
one worker the tests that share costly state (``worker_groups``), and stop at the end whatever
the run left running.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from session_services import (
    RUN_MARK,
    TEST_MARK,
    Registry,
    SessionServices,
    start_registry,
    start_shared_prefect,
    stop_marked,
)
from worker_groups import GROUPS_PATH, make_scheduler, write_groups

from tasks.settings import Settings

SHARED_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coinbase-btc-usd-2025-12"
)


def _is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _stop_leftovers(run: str) -> None:
    stopped = stop_marked(RUN_MARK, run)
    if stopped:
        print(f"\nstopped {len(stopped)} process(es) the test run left running:", file=sys.stderr)
        for pid, command in stopped.items():
            print(f"  {pid} {command}", file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    """Marks this run's processes and makes SIGTERM an interrupt, so the session's teardown runs
    (the servers' own stop); the controller (the one process without xdist) then stops any marked
    process still running, at the end or, if the end never comes, at exit."""
    signal.signal(signal.SIGTERM, _interrupt)
    if not _is_xdist_worker(config):
        os.environ[RUN_MARK] = uuid.uuid4().hex  # xdist workers and every child inherit it
        atexit.register(_stop_leftovers, os.environ[RUN_MARK])


def pytest_unconfigure(config):
    if not _is_xdist_worker(config):
        _stop_leftovers(os.environ[RUN_MARK])
        if hasattr(config, "_cryptovol_groups"):
            shutil.rmtree(config._cryptovol_groups.parent, ignore_errors=True)


def _groups_path(config) -> Path:
    """The file the workers write the test groups to (controller only; removed at the end)."""
    if not hasattr(config, "_cryptovol_groups"):
        config._cryptovol_groups = Path(tempfile.mkdtemp(prefix="cryptovol-xdist-")) / "groups"
    return config._cryptovol_groups


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: absent with -p no:xdist
def pytest_configure_node(node):
    node.workerinput[GROUPS_PATH] = str(_groups_path(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadgroup":
        return make_scheduler(config, log, _groups_path(config))
    return None


def pytest_collection_modifyitems(config, items):
    if _is_xdist_worker(config):
        write_groups(Path(config.workerinput[GROUPS_PATH]), items)


@pytest.fixture
def process_mark() -> dict[str, str]:
    """An environment entry for the processes a test starts: whatever of them still runs when the
    test ends (a timeout cut it short before its own cleanup) is stopped then."""
    value = uuid.uuid4().hex
    yield {TEST_MARK: value}
    stop_marked(TEST_MARK, value)


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
    """Starts, side by side and at once, the shared servers the collected tests will ask for. On
    an xdist worker, which collects every test but runs only some, each starts when asked."""
    services = SessionServices(
        {
            "mlflow_server": lambda: start_registry(tmp_path_factory.mktemp("mlflow")),
            "prefect_server": lambda: start_shared_prefect(tmp_path_factory.mktemp("prefect")),
        }
    )
    if not _is_xdist_worker(request.config):
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
