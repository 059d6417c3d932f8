"""The Prometheus configuration, alert and SLO rules, checked by the real promtool (Debian package,
installed by infra/setup.sh): the config and the rules load, every alert has a unit test that
fires it and one that keeps it quiet (every SLO too), and the limits agree with the settings the
monitor uses. Alertmanager's configuration, as shipped and as rendered with both outside
receivers, is checked by the real amtool."""

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
SLO_RULES = PROMETHEUS_DIR / "slo.yml"
SLO_TESTS = PROMETHEUS_DIR / "tests" / "slo_test.yml"


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


def _rules(path: Path = RULES) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def _alerts(path: Path = RULES) -> dict[str, dict]:
    return {rule["alert"]: rule for rule in _rules(path) if "alert" in rule}


def _cases(path: Path) -> list[dict]:
    return [
        case
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def test_config_is_valid(promtool):
    out = _run(promtool, "check", "config", CONFIG.name)
    assert "2 rule files found" in out


def test_rules_are_valid(promtool):
    out = _run(promtool, "check", "rules", RULES.name, SLO_RULES.name)
    assert f"{len(_alerts())} rules found" in out
    assert f"{len(_rules(SLO_RULES))} rules found" in out


def test_rule_unit_tests_pass(promtool):
    out = _run(promtool, "test", "rules", str(RULE_TESTS.relative_to(PROMETHEUS_DIR)))
    assert "SUCCESS" in out


@pytest.mark.slow  # a day and a half of samples at one a minute: about 30 s of promtool
def test_slo_unit_tests_pass(promtool):
    out = _run(promtool, "test", "rules", str(SLO_TESTS.relative_to(PROMETHEUS_DIR)))
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    cases = _cases(RULE_TESTS)
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = set(_alerts())
    assert alerts - fired == set(), "alerts without a test that fires them"
    assert alerts - quiet == set(), "alerts without a test that keeps them quiet"
    assert len(alerts) >= 12


def test_every_slo_has_a_firing_and_a_quiet_case_of_both_burn_alerts():
    slos = {rule["labels"]["slo"] for rule in _rules(SLO_RULES) if "record" in rule}
    assert slos == {
        "predict_availability",
        "predict_latency",
        "feature_freshness",
        "prediction_freshness",
    }
    cases = _cases(SLO_TESTS)
    for alert in _alerts(SLO_RULES):
        fired = {
            expected["exp_labels"]["slo"]
            for case in cases
            if case["alertname"] == alert
            for expected in case["exp_alerts"]
        }
        quiet = [c for c in cases if c["alertname"] == alert and not c["exp_alerts"]]
        assert fired == slos, f"{alert}: SLOs without a case that fires it"
        assert quiet, f"{alert}: no case that keeps it quiet"


def test_every_slo_has_its_error_ratio_over_every_alert_window():
    windows = {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    rules = _rules(SLO_RULES)
    budgets = {r["labels"]["slo"] for r in rules if r.get("record") == "slo:error_budget:ratio"}
    for window in windows:
        record = f"slo:error_ratio:rate{window}"
        assert {r["labels"]["slo"] for r in rules if r.get("record") == record} == budgets
        assert any(record in rule["expr"] for rule in _alerts(SLO_RULES).values())
    budget_period = {
        r["labels"]["slo"] for r in rules if r.get("record") == "slo:error_ratio:rate30d"
    }
    assert budget_period == budgets  # the remaining budget on the SLO dashboard


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool not found: run infra/setup.sh (Debian package prometheus-alertmanager)")
    return path


def test_alertmanager_config_as_shipped_is_valid(amtool):
    from monitoring.alerting import TEMPLATE

    done = subprocess.run([amtool, "check-config", str(TEMPLATE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 inhibit rules" in done.stdout


def test_alertmanager_config_with_both_outside_receivers_is_valid(amtool, tmp_path):
    from monitoring.alerting import render_config

    settings = Settings(
        alert_webhook_url="https://alerts.example.org/hook",
        alert_slack_url="https://hooks.slack.com/services/T000/B000/XXXX",
    )
    config = render_config(settings, tmp_path / "alertmanager.yml")
    done = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}
    assert {c["url"] for c in receivers["ticket"]["webhook_configs"]} == {
        "http://127.0.0.1:9094/",
        "https://alerts.example.org/hook",
    }
    assert "slack_configs" not in receivers["ticket"]  # a warning is not a page
    for name in ("page", "spikes"):
        assert receivers[name]["slack_configs"][0]["api_url"] == settings.alert_slack_url
    assert list(receivers["inbox"]) == ["name", "webhook_configs"]  # only the local file


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
