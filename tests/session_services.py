"""Servers the whole test session shares: one MLflow server and one Prefect server.

Tests isolate themselves on them by names (registered model, deployment's work pool, data
folders), not by starting servers of their own. Each server starts once, in a background thread,
as soon as the session knows a collected test will need it, so the servers start side by side
and while the earlier tests run; a fixture waits for its server only when a test asks for it.
Under pytest-xdist each worker has its own (started when its first test asks for one).

Every process a test run starts carries ``CRYPTOVOL_TEST_RUN`` in its environment, so whatever
outlives the run (pytest killed, a worker gone, a test cut short before its cleanup) is found
and stopped at the end by ``stop_marked``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.io.broker import free_port
from tasks.settings import Settings
from tasks.stack.servers import (
    PROJECT_DIR,
    Service,
    prefect_env,
    start_mlflow_server,
    start_prefect_server,
    tool_path,
)

PREFECT_POOL = "cryptovol"  # prefect.yaml's work pool


@dataclass
class Registry:
    """A real ``mlflow server`` (SQLite + proxied artifacts) that tests may stop and restart."""

    store: Path
    port: int
    server: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = start_mlflow_server(self.store, self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def settings(self, data_dir: Path, **overrides) -> Settings:
        return Settings(data_dir=data_dir, mlflow_tracking_uri=self.url, **overrides)


def start_registry(root: Path) -> Registry:
    registry = Registry(root, free_port())
    registry.start()
    return registry


def prefect_cli(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """``prefect ARGS`` from the project directory; its output, or an assertion naming it."""
    proc = subprocess.run(
        [tool_path("prefect"), *args],
        env={**os.environ, **env},
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    said = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{said}"
    return proc.stdout


def start_shared_prefect(home: Path) -> Service:
    """A Prefect server with the project's work pool, its scheduler off: runs start only when a
    test asks (``prefect deployment run``), so one module's schedules never reach another's
    worker."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    prefect_cli(
        prefect_env(home, port), "config", "set", "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED=false"
    )
    server = start_prefect_server(home, port)
    try:
        prefect_cli(server.env, "work-pool", "create", PREFECT_POOL, "--type", "process")
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def prefect_api(server: Service) -> Iterator[None]:
    """Flows called in this process report to ``server``. Their queued logs and events are sent
    before leaving, so none waits for a server stopped at the end of the session."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.url}):
        try:
            yield
        finally:
            APILogWorker.drain_all()
            EventsWorker.drain_all()


class SessionServices:
    """Named servers, each started at most once in a background thread and stopped at the end."""

    def __init__(self, starters: dict[str, Callable[[], object]]) -> None:
        self._starters = starters
        self._futures: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=len(starters), thread_name_prefix="service")

    def launch(self, *names: str) -> None:
        for name in names:
            if name not in self._futures:
                self._futures[name] = self._pool.submit(self._starters[name])

    def get(self, name: str):
        """The started server (waiting for it to answer), or the error its start raised."""
        self.launch(name)
        return self._futures[name].result()

    def stop_all(self) -> None:
        for future in self._futures.values():
            try:
                server = future.result()
            except Exception:
                continue  # a start that failed left nothing running
            server.stop()
        self._pool.shutdown()


RUN_MARK = "CRYPTOVOL_TEST_RUN"  # environment variable: this test run (all its workers)
TEST_MARK = "CRYPTOVOL_TEST_PROCESSES"  # environment variable: the processes of one test


def _ancestors() -> set[int]:
    """This process and its parents: never stopped, whatever their environment says."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the command name: ppid
    return pids


def marked_processes(name: str, value: str) -> list[int]:
    """The pids whose environment (as they were started with it) holds ``name=value``."""
    wanted, spared, found = f"{name}={value}".encode(), _ancestors(), []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if int(entry.name) not in spared and wanted in entry.joinpath(
                "environ"
            ).read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def stop_marked(name: str, value: str, grace_s: float = 5.0) -> dict[int, str]:
    """Stop every process marked ``name=value``: SIGTERM, then SIGKILL after ``grace_s``. Returns
    the pids found, with their command lines. Each is signalled by pid, not by group: a process a
    test started without a session of its own shares pytest's group."""
    found = {pid: _command(pid) for pid in marked_processes(name, value)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_processes(name, value):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while marked_processes(name, value) and time.monotonic() < deadline:
            time.sleep(0.1)
    return found
