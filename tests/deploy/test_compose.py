"""The distributed deployment (``infra/compose.yaml``) is valid Compose and matches the code.

Docker does not run here, so the file is checked statically: against the Compose Specification's
JSON schema (vendored by check-jsonschema), and against what the code reads: every ``cryptovol``
command parses with that command's own parser, every variable given to the application is one
its settings or its tools read (and the settings accept the values), every port scraped or
probed is the one the code listens on, images are pinned, long-running services are
health-checked, and no secret is written in the file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from tasks.cli import COMMANDS
from tasks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_IMAGE = re.compile(r"^cryptovol:")
# Variables the tools themselves read (not the settings object).
TOOL_VARIABLES = {
    "PREFECT_API_URL",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _resolve(value) -> str:
    """A value with ``${VAR:-default}`` replaced by its default (or a placeholder)."""

    def default(match: re.Match) -> str:
        return (match.group(2) or "x") if ":-" in match.group(0) else "x"

    return INTERPOLATION.sub(default, str(value))


def _settings_env_names() -> dict[str, str]:
    names = {}
    for field_name, info in Settings.model_fields.items():
        names[f"CRYPTOVOL_{field_name.upper()}"] = field_name
        alias = info.validation_alias
        for choice in getattr(alias, "choices", []) if alias else []:
            names[str(choice)] = field_name
    return names


def _app_services() -> dict[str, dict]:
    return {n: s for n, s in SERVICES.items() if APP_IMAGE.match(str(s.get("image", "")))}


def _settings_of(service: dict) -> Settings:
    env = {k: _resolve(v) for k, v in service.get("environment", {}).items()}
    known = _settings_env_names()
    values = {known[k]: v for k, v in env.items() if k in known}
    for name in ("products",):
        if name in values:
            values[name] = json.loads(values[name])
    return Settings(**values)


def test_the_file_is_valid_compose():
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(COMPOSE, schema)


def test_a_broken_file_is_caught_by_the_schema():
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    broken = {"services": {"x": {"image": "a:1", "comand": ["typo"]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_app_commands_parse_with_the_code(name):
    command = list(_app_services()[name]["command"])
    if command[0] == "cryptovol":
        assert command[1] in COMMANDS, f"{name}: unknown command {command[1]}"
        module = importlib.import_module("tasks.commands." + command[1].replace("-", "_"))
        parser = argparse.ArgumentParser(exit_on_error=False)
        module.add_arguments(parser)
        parser.parse_args(command[2:])
    else:
        assert command[0] in {"mlflow", "prefect", "dask", "/bin/sh"}, f"{name}: runs {command[0]}"


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_app_variables_are_read_by_the_code(name):
    service = _app_services()[name]
    known = set(_settings_env_names()) | TOOL_VARIABLES
    unknown = set(service.get("environment", {})) - known
    assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
    _settings_of(service)  # the settings accept every value


def _probed_port(service: dict) -> int:
    test = " ".join(service["healthcheck"]["test"])
    return int(re.search(r"localhost:(\d+)/", test).group(1))


@pytest.mark.parametrize(
    "name, field",
    [
        ("capture", "capture_metrics_port"),
        ("featurizer", "featurize_metrics_port"),
        ("scorer", "scorer_metrics_port"),
        ("mlflow", "mlflow_port"),
    ],
)
def test_probed_and_scraped_ports_are_the_code_s(name, field):
    settings = _settings_of(SERVICES[name])
    assert _probed_port(SERVICES[name]) == getattr(settings, field)
    prometheus = yaml.safe_load((INFRA / "prometheus.yml").read_text())
    scraped = {
        job["job_name"]: job["dns_sd_configs"][0]["port"]
        for job in prometheus["scrape_configs"]
        if "dns_sd_configs" in job
    }
    if name in scraped:
        assert scraped[name] == getattr(settings, field)


def test_app_services_reach_the_servers_where_they_listen():
    app = _settings_of(SERVICES["featurizer"])
    for address in app.kafka_bootstrap_servers.split(","):
        host, port = address.split(":")
        assert (
            host in SERVICES
            and "PLAINTEXT://:" + port in SERVICES[host]["environment"]["KAFKA_LISTENERS"]
        )
    mlflow_command = " ".join(SERVICES["mlflow"]["command"])
    assert f"--port={app.tracking_uri.rsplit(':', 1)[1]}" in mlflow_command
    assert SERVICES["service"]["healthcheck"]["test"][-1].count(str(Settings().service_port))
    assert "4200" in SERVICES["prefect-server"]["command"]


def test_topics_are_the_code_s():
    script = "\n".join(SERVICES["topics"]["command"])
    settings = Settings()
    for topic in (settings.raw_topic, settings.features_topic, settings.predictions_topic):
        assert topic in script
    assert settings.dlq_topic in script
    assert script.count("--replication-factor 3") == 2


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"


def test_long_running_services_are_health_checked():
    for name, service in SERVICES.items():
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name} has no health check"


def test_no_secret_in_the_file():
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY", key):
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"
    assert "PASSWORD=\n" in (INFRA / ".env.example").read_text()


def test_mounted_files_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name} mounts missing {source}"


def test_dask_workers_and_flows_reach_the_scheduler():
    address = _settings_of(SERVICES["worker"]).dask_address
    host, port = address.removeprefix("tcp://").split(":")
    assert host in SERVICES and f"--port {port}" in " ".join(SERVICES[host]["command"])
    assert address in SERVICES["dask-worker"]["command"]
