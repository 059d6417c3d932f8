"""Launch the local stack's servers as child processes: Prefect, MLflow, a Prefect worker.

Used by the integration tests, so they run the very same services a user starts by hand (see the
README's operating guide). Every server binds 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tasks.stack.supervisor import stop_group

PROJECT_DIR = Path(__file__).resolve().parents[2]


def tool_path(name: str) -> str:
    """The console script of a tool installed in this environment."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and every child it started (its process group), even if the server
        itself has exited: SIGINT first (Prefect workers only stop cleanly on it), then
        SIGTERM, then SIGKILL."""
        stop_group(self.proc.pid, timeout)
        self.proc.poll()  # the exit status, now that it has been reaped


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )


def prefect_env(home: Path, port: int) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def start_prefect_server(home: Path, port: int, timeout: float = 90.0) -> Service:
    env = prefect_env(home, port)
    log = home / "prefect-server.log"
    proc = _spawn(
        [tool_path("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        log,
        env,
        PROJECT_DIR,
    )
    service = Service("prefect", proc, env["PREFECT_API_URL"], log, env)
    try:
        wait_http(f"{service.url}/health", timeout, proc)
    except Exception:
        service.stop()
        raise
    return service


def start_prefect_worker(pool: str, env: dict[str, str], log_path: Path) -> Service:
    proc = _spawn(
        [tool_path("prefect"), "worker", "start", "--pool", pool, "--type", "process"],
        log_path,
        env,
        PROJECT_DIR,
    )
    return Service("prefect-worker", proc, env.get("PREFECT_API_URL", ""), log_path, env)


def start_mlflow_server(store_dir: Path, port: int, timeout: float = 120.0) -> Service:
    """MLflow on SQLite with artifacts proxied by the server (``mlflow-artifacts:``)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    log = store_dir / "mlflow-server.log"
    cmd = [
        tool_path("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{(store_dir / 'mlflow.db').resolve()}",
        "--artifacts-destination",
        str((store_dir / "mlartifacts").resolve()),
        "--workers",
        "1",
    ]
    proc = _spawn(cmd, log, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, PROJECT_DIR)
    service = Service("mlflow", proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_http(f"{service.url}/health", timeout, proc)
    except Exception:
        service.stop()
        raise
    return service
