"""The Prometheus configuration and alert rules, checked by the real promtool (Debian package,
installed by infra/setup.sh): the config and the rules load, every alert has a unit test that
fires it and one that keeps it quiet, and the limits agree with the settings the monitor uses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.settings import Settings

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found: run infra/setup.sh (Debian package prometheus)")
    return path


def _run(promtool: str, *args: str) -> str:
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_config_is_valid(promtool):
    out = _run(promtool, "check", "config", CONFIG.name)
    assert "1 rule files found" in out


def test_rules_are_valid(promtool):
    out = _run(promtool, "check", "rules", RULES.name)
    assert f"{len(_alerts())} rules found" in out


def test_rule_unit_tests_pass(promtool):
    out = _run(promtool, "test", "rules", str(RULE_TESTS.relative_to(PROMETHEUS_DIR)))
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    cases = [
        case
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = set(_alerts())
    assert alerts - fired == set(), "alerts without a test that fires them"
    assert alerts - quiet == set(), "alerts without a test that keeps them quiet"
    assert len(alerts) >= 12


def test_the_issue_s_alerts_are_all_there():
    assert {
        "NoTicks",
        "SequenceGaps",
        "StreamLagHigh",
        "ProcessingLatencyHigh",
        "PredictLatencyHigh",
        "ServiceErrors",
        "DriftShareHigh",
        "LivePrAucBelowPersistence",
        "RegistryUnreachable",
        "ModelNotReloaded",
    } <= set(_alerts())


def test_alert_limits_are_the_monitor_s_settings():
    settings = Settings()
    alerts = _alerts()
    assert alerts["DriftShareHigh"]["expr"].strip() == (
        f"cryptovol_drift_share > {settings.drift_share_limit}"
    )
    assert (
        f"cryptovol_live_positives >= {settings.live_min_positives}"
        in (alerts["LivePrAucBelowPersistence"]["expr"])
    )


def test_scrape_targets_are_the_local_stack_s_ports():
    settings = Settings()
    config = yaml.safe_load(CONFIG.read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets["capture"] == [f"127.0.0.1:{settings.capture_metrics_port}"]
    assert targets["featurizer"] == [f"127.0.0.1:{settings.featurize_metrics_port}"]
    assert targets["service"] == ["127.0.0.1:3000"]
    assert targets["scorer"] == ["127.0.0.1:9103"]
    assert targets["pushgateway"] == [settings.pushgateway_url.removeprefix("http://")]
    pushgateway = next(j for j in config["scrape_configs"] if j["job_name"] == "pushgateway")
    assert pushgateway["honor_labels"] is True  # the pushed job label survives
