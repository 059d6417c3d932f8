"""Run a set of local processes as one stack: start in order with health checks, remember them in
a state file, stream their logs with a prefix each, and stop them all cleanly.

Each process runs in a session of its own (so Ctrl-C in the terminal reaches only the
supervisor, which then stops the parts in reverse order: SIGINT first, because Prefect workers
only stop cleanly on it, then SIGTERM, then SIGKILL) and writes to its own log file. Stopping
signals the part's whole process group, so a child it started (MLflow's uvicorn worker) stops
with it, even when the part itself was killed first. The state
file lets ``cryptovol down`` and ``cryptovol status`` find the processes from another terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks.io.broker import port_open

SETTLE_S = 3.0  # a part with nothing to probe counts as started once it has run this long


class StackError(RuntimeError):
    """A part of the stack cannot start (port taken, health check failed...)."""


@dataclass(frozen=True)
class Part:
    """One process of the stack: how to start it and how to tell that it is healthy."""

    name: str
    argv: tuple[str, ...]
    port: int | None = None  # must be free before start, and is checked free after stop
    health_url: str | None = None  # healthy when it answers < 500; else when the port accepts
    url: str = ""  # what a user opens
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    hint: str = ""  # what to do when its port is taken


@dataclass
class Running:
    name: str
    pid: int
    port: int | None
    url: str
    health_url: str | None
    log_path: str

    def to_dict(self) -> dict:
        return asdict(self)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    return port_open(host, port, timeout=0.3)


def healthy(health_url: str | None, port: int | None, timeout: float = 2.0) -> bool:
    """An HTTP health URL answering below 500, or (without one) a port accepting connections."""
    if health_url:
        try:
            with urllib.request.urlopen(health_url, timeout=timeout) as response:
                return response.status < 500
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False
    return port is not None and port_in_use(port)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group ``pgid`` (a zombie leader counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, timeout_s: float = 10.0) -> None:
    """Stop a part's whole process group, whether or not its leader is still there: SIGINT,
    then SIGTERM, then SIGKILL, each given ``timeout_s`` for the group to empty.

    Each part is started in a session of its own, so its group holds every child it started:
    MLflow's uvicorn worker keeps serving after its ``mlflow server`` parent is killed, and only
    a signal to the group reaches it.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # reap the leader if it is our child
                os.waitpid(pgid, os.WNOHANG)
            if not group_alive(pgid):
                return
            time.sleep(0.1)


class Stack:
    """The processes started so far, persisted in ``state_path`` after each start."""

    def __init__(self, state_path: Path, log_dir: Path, cwd: Path) -> None:
        self.state_path = state_path
        self.log_dir = log_dir
        self.cwd = cwd
        self.running: list[Running] = []
        self.external: dict[str, str] = {}  # parts used from elsewhere: name -> address

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor_pid": os.getpid(),
            "running": [r.to_dict() for r in self.running],
            "external": self.external,
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def start(self, part: Part, report: Callable[[str], None]) -> Running:
        if part.port is not None and port_in_use(part.port):
            raise StackError(
                f"{part.name}: port {part.port} is already in use. "
                + (part.hint or "Stop what holds it (`cryptovol down` if it is an old stack).")
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{part.name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                list(part.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **part.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        running = Running(part.name, proc.pid, part.port, part.url, part.health_url, str(log_path))
        self.running.append(running)
        self.save()
        started = time.monotonic()
        deadline = started + part.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"{part.name} exited with code {proc.returncode} before it was healthy; "
                    f"its log: {log_path}\n{tail(log_path)}"
                )
            if part.health_url is None and part.port is None:
                if time.monotonic() - started >= SETTLE_S:  # nothing to probe: still running
                    report(f"{part.name:<12} running  {part.url}")
                    return running
            elif healthy(part.health_url, part.port):
                report(
                    f"{part.name:<12} healthy in {time.monotonic() - started:4.1f} s  {part.url}"
                )
                return running
            time.sleep(0.25)
        raise StackError(
            f"{part.name} was not healthy within {part.start_timeout_s:.0f} s; its log: {log_path}"
        )

    def stop_all(self, report: Callable[[str], None]) -> None:
        for running in reversed(self.running):
            stop_group(running.pid)
            report(f"{running.name:<12} stopped")
        self.running.clear()
        self.state_path.unlink(missing_ok=True)


def load_state(state_path: Path) -> dict | None:
    try:
        return json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None


def stop_from_state(state_path: Path, report: Callable[[str], None]) -> list[int]:
    """Stop every process a state file lists (newest first); the ports still taken after."""
    state = load_state(state_path)
    if state is None:
        report("no stack is running (no state file at " + str(state_path) + ")")
        return []
    supervisor = state.get("supervisor_pid")
    if supervisor and supervisor != os.getpid() and alive(supervisor):
        with contextlib.suppress(ProcessLookupError):  # a foreground `up` stops its own parts
            os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and alive(supervisor):
            time.sleep(0.2)
    for running in reversed(state.get("running", [])):
        stop_group(running["pid"])  # its children too, even when the part itself is gone
        report(f"{running['name']:<12} stopped")
    state_path.unlink(missing_ok=True)
    ports = [r["port"] for r in state.get("running", []) if r.get("port")]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(port_in_use(p) for p in ports):
        time.sleep(0.2)
    return [p for p in ports if port_in_use(p)]


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class LogFollower(threading.Thread):
    """Prints new lines of every part's log file, prefixed with the part's name."""

    def __init__(self, stack: Stack, out=None, interval_s: float = 0.3) -> None:
        super().__init__(daemon=True, name="stack-logs")
        self.stack = stack
        self.out = out or sys.stdout
        self.interval_s = interval_s
        self.offsets: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            for running in list(self.stack.running):
                self._print_new(running)

    def _print_new(self, running: Running) -> None:
        path = Path(running.log_path)
        offset = self.offsets.get(running.name)
        try:
            size = path.stat().st_size
        except OSError:
            return
        if offset is None:
            offset = size  # start from now: the start-up lines were summarised already
        if size <= offset:
            self.offsets[running.name] = offset
            return
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read(size - offset)
        complete = chunk.rfind(b"\n") + 1
        for line in chunk[:complete].decode(errors="replace").splitlines():
            print(f"{running.name:<12}| {line}", file=self.out, flush=True)
        self.offsets[running.name] = offset + complete
