"""``bentoml build -f bentos/bentofile.yaml`` works offline (no package resolution), the bento
carries the project's code, and the built bento serves the registry's champion; ``bentoml serve``
with no champion stops by itself, saying how to make one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from serving_support import (
    EXAMPLE_ROW,
    get,
    predict,
    serving_env,
    start_bento,
    tool,
    wait_for,
    wait_ready,
)

from tasks.stack.servers import PROJECT_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def find_uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed: `bentoml build` needs it on PATH")
    return found


def test_built_bento_serves_the_champion(serving_stack, tmp_path):
    home = tmp_path / "bentoml"
    env = serving_env(serving_stack.registry.url, home)
    env["PATH"] = f"{Path(find_uv()).parent}{os.pathsep}{env.get('PATH', '')}"
    build = subprocess.run(
        [tool("bentoml"), "build", "-f", "bentos/bentofile.yaml", "-o", "tag"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    tag = build.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("volatility_service:"), build.stdout
    src = home / "bentos" / "volatility_service" / tag.split(":")[1] / "src"
    for module in ("bentos/service.py", "tasks/io/model_source.py", "tasks/core/models.py"):
        assert (src / module).is_file(), f"the bento lacks {module}"
    assert not (src / "tests").exists()

    server = wait_ready(start_bento(tag, env, tmp_path / "bento.log"))
    try:
        version = get(server, "/version").json()
        assert version["bento"] == tag
        assert version["version"] == get(server, "/health").json()["version"]
        response = predict(server, {"rows": [EXAMPLE_ROW]})
        assert response.status_code == 200, response.text
    finally:
        server.stop()


def test_no_champion_stops_the_server_with_a_hint(tmp_path):
    store = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    (tmp_path / "empty").mkdir()
    server = start_bento(
        "bentos.service:VolatilityService", serving_env(store, tmp_path), tmp_path / "bento.log"
    )
    try:
        assert wait_for(lambda: server.proc.poll() is not None, 180, interval=0.5), (
            "bentoml serve kept running without a champion"
        )
    finally:
        server.stop()
    log = server.log()
    assert "models:/volatility-spike@champion does not exist" in log
    assert "cryptovol train" in log and "cryptovol promote" in log
